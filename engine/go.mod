module github.com/duet-llm/duet/engine

go 1.26
