//go:build race

package walhooktest

// raceBuild reports whether this test binary runs with the race detector.
const raceBuild = true
