// Package version holds the build's version, set at link time:
//
//	go build -ldflags "-X github.com/duet-llm/duet/engine/version.Version=v1.2.3"
package version

// Version is the release this binary was built from ("dev" when unset).
var Version = "dev"
