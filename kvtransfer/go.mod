module github.com/duet-llm/duet/kvtransfer

go 1.26.0

require (
	github.com/Mellanox/rdmamap v1.2.0
	github.com/ebitengine/purego v0.11.3
	go.uber.org/goleak v1.3.0
	go.uber.org/zap v1.28.0
	golang.org/x/sync v0.25.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/duet-llm/duet/engine v0.0.0-00010101000000-000000000000
	github.com/vishvananda/netlink v1.3.1 // indirect
	github.com/vishvananda/netns v0.0.5 // indirect
	go.uber.org/multierr v1.10.0 // indirect
)

replace github.com/duet-llm/duet/engine => ../engine

replace github.com/duet-llm/duet/proto => ../proto
