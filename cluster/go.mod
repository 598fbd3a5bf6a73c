module github.com/duet-llm/duet/cluster

go 1.26
