package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// process is one program of the lab (an apiserver, a scheduler, kwok, a flotilla...). It remembers how it
// was started so that a test can kill it and start it again with the same ports and files.
type process struct {
	Name    string   `json:"name"`
	Path    string   `json:"path"`
	Args    []string `json:"args"`
	LogFile string   `json:"logFile"`
	PID     int      `json:"pid"`
	// Env is added to the lab's own environment, which the process inherits.
	Env []string `json:"env,omitempty"`
	// CPUs, when set, are the only CPUs the process may run on (a taskset(1) CPU list such as "0" or "2-3"),
	// from its first instruction, every thread of it (see Options.ManagementCPUs).
	CPUs string `json:"cpus,omitempty"`

	// cmd is set only in the process that started it; a lab loaded from its state file (make lab-down)
	// knows only the PID.
	cmd *exec.Cmd
	// exited is closed once cmd has been reaped.
	exited chan struct{}
}

// start launches the program with its output appended to its log file.
//
// attached processes (tests) die with the process that started them (Pdeathsig), so a test binary that
// crashes leaves nothing behind. Detached processes (make lab) outlive the command that started them;
// each gets a session of its own so a terminal's Ctrl-C does not reach it.
// flag is the value the process was started with for a --name=value argument, "" if none.
func (p *process) flag(name string) string {
	value := ""
	for _, a := range p.Args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			value = v // the last one wins, as with pflag
		}
	}
	return value
}

func (p *process) start(attached bool) error {
	if err := os.MkdirAll(filepath.Dir(p.LogFile), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(p.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n==== %s starting %s %q\n", time.Now().Format(time.RFC3339), p.Path, p.Args)

	cmd := exec.Command(p.Path, p.Args...)
	if p.CPUs != "" {
		// taskset sets the affinity and execs the program in place, so the PID is the program's. Set later
		// on a running Go program, an affinity would bind only the thread it names.
		cmd = exec.Command("taskset", append([]string{"--cpu-list", p.CPUs, p.Path}, p.Args...)...)
	}
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if attached {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.Name, err)
	}
	p.cmd, p.PID, p.exited = cmd, cmd.Process.Pid, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return nil
}

// running reports whether the process is alive (a stopped process counts as alive).
func (p *process) running() bool {
	if p.PID == 0 {
		return false
	}
	if p.exited != nil {
		select {
		case <-p.exited:
			return false
		default:
			return true
		}
	}
	// Not our child (a lab started by an earlier `make lab`): the PID exists, still runs our binary (the
	// PID was not reused by an unrelated process after a reboot), and is not a zombie. An orphan's zombie
	// lingers where the container's PID 1 does not reap, and must count as ended.
	// (A binary replaced on disk since shows as "<path> (deleted)".)
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID)); err != nil || strings.TrimSuffix(exe, " (deleted)") != p.Path {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return false
	}
	state, ok := procState(stat)
	return ok && state != 'Z'
}

// procState returns the state letter of a /proc/<pid>/stat line ("R", "S", "T", "Z", ...). The command
// name before it is in parentheses and may itself contain spaces and parentheses, hence the last ')'.
func procState(stat []byte) (byte, bool) {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, false
	}
	return s[i+2], true
}

// freeze stops the process with SIGSTOP and waits until every one of its threads has stopped. kill(2)
// returns before the kernel has stopped a thread that is running on another CPU, and in that moment the
// server can still answer a request; a test that freezes a server must be able to rely on silence.
func (p *process) freeze() error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		running, err := p.runningThreads()
		if err != nil {
			return fmt.Errorf("freezing %s: %w", p.Name, err)
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("freezing %s: %d threads still not stopped after 5s", p.Name, running)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runningThreads counts the process's threads that are neither stopped ('T'), traced ('t') nor exiting
// ('Z', 'X': a thread that has ended but not been reaped cannot answer either).
func (p *process) runningThreads() (int, error) {
	dir := fmt.Sprintf("/proc/%d/task", p.PID)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	running := 0
	for _, task := range tasks {
		stat, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			continue // the thread exited between ReadDir and ReadFile
		}
		if state, ok := procState(stat); ok && !strings.ContainsRune("TtZX", rune(state)) {
			running++
		}
	}
	return running, nil
}

func (p *process) signal(sig syscall.Signal) error {
	if !p.running() {
		return fmt.Errorf("%s is not running", p.Name)
	}
	return syscall.Kill(p.PID, sig)
}

// stop ends the process: SIGTERM first so servers close cleanly, SIGKILL after the grace period.
// A frozen (SIGSTOPped) process is continued so it can see the SIGTERM.
func (p *process) stop(grace time.Duration) error {
	if !p.running() {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	_ = syscall.Kill(p.PID, syscall.SIGCONT)
	deadline := time.Now().Add(grace)
	for p.running() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if p.running() {
		if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("killing %s (pid %d): %w", p.Name, p.PID, err)
		}
		for i := 0; p.running() && i < 100; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if p.running() {
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.PID)
	}
	return nil
}

// kill ends the process at once, as a crash would.
func (p *process) kill() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	for i := 0; p.running() && i < 250; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
