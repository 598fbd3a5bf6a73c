// Command duet-generate runs the built-in engine on one prompt and streams
// the completion (without the prompt) to stdout.
//
//	duet-generate --model ../shared/models/stories260K.gguf --prompt "Once upon a time" --temperature 0
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/duet-llm/duet/engine"
	"github.com/duet-llm/duet/engine/sample"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type config struct {
	model, prompt           string
	maxTokens, topK         int
	temperature, topP, minP float64
	seed                    int64
	ids, noBOS              bool
	stops                   stringList
	engine                  engine.Options
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func run(args []string, stdout, stderr io.Writer) int {
	c := config{engine: engine.DefaultOptions()}
	c.engine.MaxSeqs = 1
	fs := flag.NewFlagSet("duet-generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.model, "model", "", "path of a GGUF model (required)")
	fs.StringVar(&c.prompt, "prompt", "", "prompt text (empty: start from BOS alone)")
	fs.IntVar(&c.maxTokens, "max-tokens", 256, "most tokens to generate (0: until the context is full)")
	fs.Float64Var(&c.temperature, "temperature", 1, "sampling temperature; 0 is greedy")
	fs.Float64Var(&c.topP, "top-p", 1, "nucleus sampling mass (1 = off)")
	fs.IntVar(&c.topK, "top-k", 0, "keep the k most likely tokens (0 = off)")
	fs.Float64Var(&c.minP, "min-p", 0, "drop tokens below min-p times the top probability (0 = off)")
	fs.Int64Var(&c.seed, "seed", -1, "random seed (-1: a fresh random one)")
	fs.BoolVar(&c.ids, "ids", false, "print the generated token ids, comma-separated, instead of text")
	fs.Var(&c.stops, "stop", "stop string (repeatable, up to 4)")
	c.engine.AddFlags(fs) // the same engine flags and defaults as the nodes, so outputs compare
	fs.BoolVar(&c.noBOS, "no-bos", false, "do not prepend the BOS token")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if c.model == "" {
		fmt.Fprintln(stderr, "duet-generate: --model is required")
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := generate(ctx, c, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "duet-generate:", err)
		return 1
	}
	return 0
}

func generate(ctx context.Context, c config, stdout, stderr io.Writer) error {
	m, err := engine.OpenModel(c.model)
	if err != nil {
		return err
	}
	defer m.Close()
	prompt := m.Tokenizer.Encode(c.prompt, !c.noBOS && m.Tokenizer.AddBOS())
	if len(prompt) == 0 {
		return errors.New("empty prompt: give --prompt or allow BOS")
	}
	eng, err := engine.New(m, c.engine)
	if err != nil {
		return err
	}
	defer eng.Close()

	p := sample.DefaultParams()
	p.Temperature, p.TopP, p.TopK, p.MinP = float32(c.temperature), float32(c.topP), c.topK, float32(c.minP)
	p.MaxTokens = c.maxTokens
	p.StopTokens = m.StopTokens()
	if c.seed >= 0 {
		s := uint64(c.seed)
		p.Seed = &s
	}
	text, err := m.NewTextStream(c.stops)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	var ids []string
	_, err = eng.Generate(ctx, prompt, p, func(t sample.Token) error {
		if t.Finish == sample.FinishStop {
			return nil // a stop token is not part of the completion
		}
		if c.ids {
			ids = append(ids, strconv.Itoa(int(t.ID)))
			return nil
		}
		s, stopped := text.Push(t.ID)
		out.WriteString(s)
		if stopped {
			return errStopString
		}
		return out.Flush()
	})
	if errors.Is(err, errStopString) {
		err = nil
	}
	if c.ids {
		fmt.Fprintln(out, strings.Join(ids, ","))
	} else {
		out.WriteString(text.Flush())
		fmt.Fprintln(out)
	}
	return err
}

var errStopString = errors.New("stop string")
