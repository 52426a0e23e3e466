# flotilla: two commands do everything on a fresh machine.
#   make lab    bring up the local lab (a management cluster, four workload clusters, one flotilla each)
#   make test   unit tests and end-to-end tests (each test binary starts its own lab)

GO        ?= go
LAB_DIR   ?= .lab
# Workload clusters of `make lab`, as name=region pairs.
WORKLOADS ?= us-west-2-0=us-west-2,us-west-2-1=us-west-2,eu-west-3-0=eu-west-3,eu-west-3-1=eu-west-3
# End-to-end tests share a machine with five control planes; give them room.
TEST_TIMEOUT ?= 45m
# The version-skew run: the core scenarios again, with the workload clusters on an older Kubernetes (a tools
# module under test/tools) than the management cluster's.
SKEW_KUBERNETES ?= k8s-1.35
SKEW_TESTS ?= TestClustersRunTheirKubernetes|TestRegionalDeployments|TestScalingFollows|TestRestartMidRollout|TestServiceAndIngressFollowPods|TestConfigMapAndSecretFollowJob|TestDrainMovesPodsToTheOtherCluster|TestLostClusterFailsOver|TestLostFlotillaFailsOver

.PHONY: all build lab lab-status lab-down test unit e2e e2e-skew bench binaries vet clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -o bin/flotilla ./cmd/flotilla

# The control-plane binaries of every Kubernetes version under test/tools, kwok, metrics-server and Helm,
# built once per version into .cache/ (see README for how long).
binaries:
	$(GO) run ./test/lab/cmd/lab binaries

lab:
	$(GO) run ./test/lab/cmd/lab up --dir $(LAB_DIR) --workloads $(WORKLOADS)

lab-status:
	$(GO) run ./test/lab/cmd/lab status --dir $(LAB_DIR)

lab-down:
	$(GO) run ./test/lab/cmd/lab down --dir $(LAB_DIR)

vet:
	$(GO) vet ./...

# The README's test command. Binaries are built first so their cold build is not charged to one
# test binary's timeout.
test: binaries vet
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) e2e-skew

# Every package but the end-to-end ones and the benchmarks (test/); those with a lab_test.go start a small lab.
unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/)

e2e: binaries
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v ./test/...

e2e-skew: binaries
	FLOTILLA_E2E_WORKLOAD_KUBERNETES=$(SKEW_KUBERNETES) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -run '$(SKEW_TESTS)' ./test/e2e/

# Benchmarks print numbers (flotilla beside the direct, single-cluster path); they are not pass/fail.
bench: binaries
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./test/bench/...

# The published benchmark (docs/benchmarks.md and its plots), in one command: every benchmark with its result
# files kept in BENCH_RESULTS, the 10,000-pod fleet last and on its own (eleven control planes: on a small
# machine it may not finish, and the page then says so), then the page. A benchmark that fails does not stop
# the others. bench-page rewrites the page from the kept results alone.
BENCH_RESULTS ?= docs/benchmarks/results
BENCH_HEAVY   ?= DeploymentRollout/10000x10
.PHONY: bench-doc bench-page
bench-doc: binaries
	rm -rf $(BENCH_RESULTS) && mkdir -p $(BENCH_RESULTS)
	-FLOTILLA_BENCH_OUT=$(CURDIR)/$(BENCH_RESULTS) $(GO) test -run '^$$' -bench . -skip '$(BENCH_HEAVY)' -benchtime 1x -timeout 120m ./test/bench/ 2>&1 | tee $(BENCH_RESULTS)/bench.log
	-FLOTILLA_BENCH_OUT=$(CURDIR)/$(BENCH_RESULTS) $(GO) test -run '^$$' -bench '$(BENCH_HEAVY)' -benchtime 1x -timeout 120m ./test/bench/ 2>&1 | tee -a $(BENCH_RESULTS)/bench.log
	$(GO) run ./test/bench/cmd/benchdoc -machine -results $(BENCH_RESULTS) -docs docs

bench-page:
	$(GO) run ./test/bench/cmd/benchdoc -results $(BENCH_RESULTS) -docs docs

clean:
	rm -rf bin
