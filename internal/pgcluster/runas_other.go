//go:build !unix

package pgcluster

import "os/exec"

// runAs is unused where PostgreSQL does not refuse to run as root.
type runAs struct{}

func unprivilegedUser() (*runAs, error) { return nil, nil }

func (r *runAs) apply(*exec.Cmd) {}

func (c *Cluster) chown(string) error { return nil }
