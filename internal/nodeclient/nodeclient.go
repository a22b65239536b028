// Package nodeclient prepares the Node.js test directory that runs
// WooCommerce's official JavaScript client against walhook's API.
package nodeclient

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// Dir returns the client test directory (api/clienttest in the module).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "api", "clienttest")
}

// Ensure installs the client's pinned dependencies with "npm ci" unless
// they are there, holding a lock so test packages running at the same
// time do not install over each other. It returns the node binary.
func Ensure(ctx context.Context) (string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", fmt.Errorf("node (Node.js 20 or newer) is needed to run WooCommerce's JavaScript client: %w", err)
	}
	dir := Dir()
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "walhook-clienttest.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it too
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@woocommerce", "woocommerce-rest-api", "package.json")); err == nil {
		return node, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("npm is needed to install WooCommerce's JavaScript client into %s: %w", dir, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return node, nil
}
