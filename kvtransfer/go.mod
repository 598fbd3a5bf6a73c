module github.com/duet-llm/duet/kvtransfer

go 1.26
