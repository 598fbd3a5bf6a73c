package direct

import (
	"context"
	"strings"
	"testing"

	"github.com/duet-llm/duet/bench/internal/load"
)

// The direct path against real nodes runs in package pd's TestRunSmall
// (the overhead phase on a colocated node and on a PD pair); these are
// the corners that need no node.
func TestTextPromptRefused(t *testing.T) {
	c, err := New(Pair{Model: "m", PrefillAddr: "127.0.0.1:1", DecodeAddr: "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, _ := c.Generate(context.Background(), load.Request{ID: 1, PromptText: "hello", MaxTokens: 4})
	if s.OK() || !strings.Contains(s.Error, ErrText.Error()) {
		t.Fatalf("sample %+v", s)
	}
}

func TestUnreachableNode(t *testing.T) {
	// Nothing listens on port 1: Reserve fails at once, with the leg named.
	c, err := New(Pair{Model: "m", PrefillAddr: "127.0.0.1:1", DecodeAddr: "127.0.0.1:1", Local: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.Send(context.Background(), load.Request{ID: 1, PromptIDs: []int32{1, 2, 3}, MaxTokens: 4})
	if s.OK() || !strings.HasPrefix(s.Error, "reserve: ") || s.TTFTms != 0 {
		t.Fatalf("sample %+v", s)
	}
}
