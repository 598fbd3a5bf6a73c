package load

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
)

// ErrBadPromptFile is returned for a prompt file that cannot be used.
var ErrBadPromptFile = errors.New("load: bad prompt file")

// Limits of a prompt file.
const (
	maxPromptLine = 16 << 20 // bytes in one JSONL line
	maxPrompts    = 1 << 20  // lines
)

// FilePrompt is one prompt of a JSONL prompt file. Each line is an object
//
//	{"prompt": "text" | [token ids], "max_tokens": N, "prompt_tokens": N}
//
// where max_tokens (the output length) and prompt_tokens (the prompt's
// length, for text prompts, when known) are optional. Blank lines and
// lines starting with # are skipped.
type FilePrompt struct {
	Text      string
	IDs       []int32
	MaxTokens int
	Tokens    int
}

// ReadPrompts reads a JSONL prompt file. An error names the line.
func ReadPrompts(r io.Reader) ([]FilePrompt, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out []FilePrompt
	for line := 1; ; line++ {
		b, err := readLine(br, maxPromptLine)
		if err == io.EOF && b == nil {
			break
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadPromptFile, line, err)
		}
		b = bytes.TrimSpace(b)
		if len(b) == 0 || b[0] == '#' {
			if err == io.EOF {
				break
			}
			continue
		}
		p, perr := parsePrompt(b)
		if perr != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadPromptFile, line, perr)
		}
		if len(out) >= maxPrompts {
			return nil, fmt.Errorf("%w: more than %d prompts", ErrBadPromptFile, maxPrompts)
		}
		out = append(out, p)
		if err == io.EOF {
			break
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no prompts", ErrBadPromptFile)
	}
	return out, nil
}

// readLine reads one line without its newline; a line longer than limit
// is an error. At the end it returns the last line (if any) with io.EOF.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > limit+1 {
			return nil, fmt.Errorf("line longer than %d bytes", limit)
		}
		line = append(line, frag...)
		switch err {
		case nil:
			return line[:len(line)-1], nil
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			if len(line) == 0 {
				return nil, io.EOF
			}
			return line, io.EOF
		default:
			return nil, err
		}
	}
}

func parsePrompt(b []byte) (FilePrompt, error) {
	var raw struct {
		Prompt       json.RawMessage `json:"prompt"`
		MaxTokens    *float64        `json:"max_tokens"`
		PromptTokens *float64        `json:"prompt_tokens"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return FilePrompt{}, fmt.Errorf("not a JSON object: %v", err)
	}
	var p FilePrompt
	var err error
	if p.MaxTokens, err = count("max_tokens", raw.MaxTokens, 1); err != nil {
		return p, err
	}
	if p.Tokens, err = count("prompt_tokens", raw.PromptTokens, 0); err != nil {
		return p, err
	}
	pr := bytes.TrimSpace(raw.Prompt)
	switch {
	case len(pr) == 0 || string(pr) == "null":
		return p, errors.New(`no "prompt"`)
	case pr[0] == '"':
		if err := json.Unmarshal(pr, &p.Text); err != nil {
			return p, fmt.Errorf("prompt: %v", err)
		}
		if p.Text == "" {
			return p, errors.New("empty prompt")
		}
	case pr[0] == '[':
		var ids []float64
		if err := json.Unmarshal(pr, &ids); err != nil {
			return p, errors.New("prompt: want a string or an array of token ids")
		}
		if len(ids) == 0 {
			return p, errors.New("empty prompt")
		}
		p.IDs = make([]int32, len(ids))
		for i, v := range ids {
			if v != math.Trunc(v) || v < 0 || v > math.MaxInt32 {
				return p, fmt.Errorf("prompt[%d] = %v is not a token id", i, v)
			}
			p.IDs[i] = int32(v)
		}
		p.Tokens = len(ids)
	default:
		return p, errors.New("prompt: want a string or an array of token ids")
	}
	return p, nil
}

// count reads an optional non-negative integer field.
func count(name string, v *float64, least int) (int, error) {
	if v == nil {
		return 0, nil
	}
	if *v != math.Trunc(*v) || *v < float64(least) || *v > 1<<24 {
		return 0, fmt.Errorf("%s = %v: want an integer from %d to %d", name, *v, least, 1<<24)
	}
	return int(*v), nil
}
