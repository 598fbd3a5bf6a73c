module github.com/duet-llm/duet/router

go 1.26.0

require github.com/duet-llm/duet/engine v0.0.0

replace github.com/duet-llm/duet/engine => ../engine
