package envflag

import (
	"flag"
	"testing"
)

func TestApply(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	a := fs.String("kv-memory", "1", "")
	b := fs.Int("max-seqs", 2, "")
	c := fs.Bool("verbose", false, "")
	if err := fs.Parse([]string{"--max-seqs", "5"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DUET_KV_MEMORY": "8GiB", "DUET_MAX_SEQS": "9", "DUET_VERBOSE": "true"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := Apply(fs, "DUET_", lookup); err != nil {
		t.Fatal(err)
	}
	if *a != "8GiB" || *b != 5 || !*c {
		t.Fatalf("kv-memory %q max-seqs %d verbose %v", *a, *b, *c)
	}
	env["DUET_MAX_SEQS"] = "nine"
	fs2 := flag.NewFlagSet("y", flag.ContinueOnError)
	fs2.Int("max-seqs", 2, "")
	fs2.Parse(nil)
	if err := Apply(fs2, "DUET_", lookup); err == nil {
		t.Fatal("bad value accepted")
	}
}
