package join

import (
	"os"
	"path/filepath"
)

// WriteFiles writes the credentials as files of dir, one per key, readable by the owner only: what a
// flotilla run outside the management cluster points its flags at (the Secret, mounted, gives the same).
func WriteFiles(dir string, data map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for key, value := range data {
		if err := os.WriteFile(filepath.Join(dir, key), value, 0o600); err != nil {
			return err
		}
	}
	return nil
}
