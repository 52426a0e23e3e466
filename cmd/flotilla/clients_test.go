package main

import (
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TestLoadKubeconfigCompression: flotilla's clients ask for uncompressed answers unless --api-compression
// says otherwise (see loadKubeconfig for why).
func TestLoadKubeconfigCompression(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kubeconfig := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"c": {Server: "https://127.0.0.1:6443"}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"u": {Token: "t"}},
		Contexts:       map[string]*clientcmdapi.Context{"x": {Cluster: "c", AuthInfo: "u"}},
		CurrentContext: "x",
	}
	if err := clientcmd.WriteToFile(kubeconfig, path); err != nil {
		t.Fatal(err)
	}
	for _, compression := range []bool{false, true} {
		cfg, err := loadKubeconfig("workload", path, 10, 20, compression)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.DisableCompression == compression {
			t.Errorf("--api-compression=%v: DisableCompression %v", compression, cfg.DisableCompression)
		}
	}
}
