module github.com/duet-llm/duet/engine

go 1.26.0

require (
	github.com/duet-llm/duet/proto v0.0.0-00010101000000-000000000000
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.50.0
)

require google.golang.org/protobuf v1.36.12 // indirect

replace github.com/duet-llm/duet/proto => ../proto
