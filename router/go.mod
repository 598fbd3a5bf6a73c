module github.com/duet-llm/duet/router

go 1.26.0

require (
	github.com/duet-llm/duet/engine v0.0.0
	go.uber.org/goleak v1.3.0
	go.uber.org/zap v1.28.0
)

require go.uber.org/multierr v1.10.0 // indirect

replace github.com/duet-llm/duet/engine => ../engine
