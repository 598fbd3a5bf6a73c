package commonv1

import "testing"

func TestPromptHash(t *testing.T) {
	// FNV-1a of no bytes is the offset basis.
	if PromptHash(nil) != 14695981039346656037 {
		t.Fatal("empty hash")
	}
	a := PromptHash([]int32{1, 403, 407})
	if a != PromptHash([]int32{1, 403, 407}) || a == PromptHash([]int32{1, 407, 403}) || a == PromptHash([]int32{1, 403}) {
		t.Fatal("hash does not tell prompts apart")
	}
}
