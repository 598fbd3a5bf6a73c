package chat

import (
	"errors"
	"fmt"
	"strings"
)

// Errors Render returns, wrapped with the position of the offending
// message. They describe the client's conversation: the API layer answers
// 400 with the message.
var (
	ErrNoMessages = errors.New("chat: the conversation has no messages")
	ErrNoUser     = errors.New("chat: the conversation has no user message")
	ErrRole       = errors.New("chat: unsupported role")
	ErrOrder      = errors.New("chat: conversation roles must alternate user/assistant/user/assistant/...")
)

// Roles Render accepts.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Message is one turn of the conversation.
type Message struct {
	Role    string // RoleSystem, RoleUser or RoleAssistant
	Content string
}

// Family is a chat template layout.
type Family uint8

// The families Detect recognizes (see the package documentation).
const (
	Default Family = iota
	ChatML
	Llama3
	Gemma
	Phi3
	Zephyr
	Llama2
	Mistral
)

var familyNames = [...]string{"default", "chatml", "llama3", "gemma", "phi3", "zephyr", "llama2", "mistral"}

func (f Family) String() string {
	if int(f) < len(familyNames) {
		return familyNames[f]
	}
	return fmt.Sprintf("family(%d)", uint8(f))
}

// Specials are the texts of the model's BOS and EOS tokens, which some
// templates emit between turns. Empty fields default to "<s>" and "</s>".
type Specials struct {
	BOS, EOS string
}

// Template renders conversations for one model. The zero value is the
// default layout. A Template is immutable and safe for concurrent use.
type Template struct {
	family  Family
	bos     string
	eos     string
	system  string // chatml: the system prompt the template inserts when there is none
	llama31 bool   // llama3: always a system turn, with the knowledge dates
}

// llama31Header is what Llama 3.1 templates put at the top of the system
// turn (with the template's default date).
const llama31Header = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"

// Detect recognizes the family of a Jinja chat template from its source
// (tokenizer.chat_template) and returns the Template that renders it. An
// empty or unrecognized source gives the default layout.
func Detect(source string, sp Specials) Template {
	t := Template{bos: sp.BOS, eos: sp.EOS}
	if t.bos == "" {
		t.bos = "<s>"
	}
	if t.eos == "" {
		t.eos = "</s>"
	}
	has := func(s string) bool { return strings.Contains(source, s) }
	switch {
	case has("<|im_start|>"):
		t.family = ChatML
		t.system = chatMLDefaultSystem(source)
	case has("<|start_header_id|>"):
		t.family = Llama3
		t.llama31 = has("Cutting Knowledge Date")
	case has("<start_of_turn>"):
		t.family = Gemma
	case has("<|user|>") && has("<|end|>"):
		t.family = Phi3
	case has("<|user|>"):
		t.family = Zephyr
	case has("[INST]") && has("<<SYS>>"):
		t.family = Llama2
	case has("[INST]"):
		t.family = Mistral
	}
	return t
}

// chatMLDefaultSystem finds a literal default system prompt in a ChatML
// template: a Jinja string '<|im_start|>system\n<literal><|im_end|>' whose
// literal holds no expression. It returns "" when there is none.
func chatMLDefaultSystem(src string) string {
	const open = "<|im_start|>system"
	for rest := src; ; {
		i := strings.Index(rest, open)
		if i < 0 {
			return ""
		}
		rest = rest[i+len(open):]
		var body string
		switch {
		case strings.HasPrefix(rest, `\n`):
			body = rest[2:]
		case strings.HasPrefix(rest, "\n"):
			body = rest[1:]
		default:
			continue
		}
		j := strings.Index(body, "<|im_end|>")
		if j <= 0 {
			continue
		}
		lit := body[:j]
		if strings.ContainsAny(lit, `'"{}+`) || strings.Contains(lit, "\\") && !onlyNewlineEscapes(lit) {
			continue
		}
		return strings.ReplaceAll(lit, `\n`, "\n")
	}
}

// onlyNewlineEscapes reports whether every backslash in s starts a \n.
func onlyNewlineEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			if i+1 >= len(s) || s[i+1] != 'n' {
				return false
			}
			i++
		}
	}
	return true
}

// Family returns the detected family.
func (t Template) Family() Family { return t.family }

// DefaultSystem returns the system prompt a ChatML template inserts when
// the conversation has none ("" if it inserts none).
func (t Template) DefaultSystem() string { return t.system }

// Segment is a piece of a rendered prompt.
type Segment struct {
	Text string
	// Special marks the text of a special token emitted by the template
	// (never message content). A tokenizer encodes it as that token when
	// the vocabulary has it as a special token, and as text otherwise.
	Special bool
}

// Prompt is a rendered conversation, without the leading BOS.
type Prompt []Segment

// String returns the prompt as one string, as the Jinja template would
// render it (without the leading BOS).
func (p Prompt) String() string {
	var b strings.Builder
	for _, s := range p {
		b.WriteString(s.Text)
	}
	return b.String()
}

type builder struct{ p Prompt }

// text appends plain text, merged with the text before it.
func (b *builder) text(parts ...string) {
	for _, s := range parts {
		if s == "" {
			continue
		}
		if n := len(b.p); n > 0 && !b.p[n-1].Special {
			b.p[n-1].Text += s
			continue
		}
		b.p = append(b.p, Segment{Text: s})
	}
}

func (b *builder) special(s string) { b.p = append(b.p, Segment{Text: s, Special: true}) }

// Render formats msgs as the template's family does, ending with the
// generation prompt for the assistant's turn. It checks roles and turn
// order; the errors wrap ErrNoMessages, ErrNoUser, ErrRole or ErrOrder.
func (t Template) Render(msgs []Message) (Prompt, error) {
	if len(msgs) == 0 {
		return nil, ErrNoMessages
	}
	user := false
	for i, m := range msgs {
		switch m.Role {
		case RoleUser:
			user = true
		case RoleSystem, RoleAssistant:
		default:
			return nil, fmt.Errorf("%w %q in messages[%d] (system, user and assistant are supported)", ErrRole, m.Role, i)
		}
	}
	if !user {
		return nil, ErrNoUser
	}
	var b builder
	var err error
	switch t.family {
	case ChatML:
		t.renderChatML(&b, msgs)
	case Llama3:
		t.renderLlama3(&b, msgs)
	case Gemma:
		err = t.renderGemma(&b, msgs)
	case Phi3:
		for _, m := range msgs {
			b.special("<|" + m.Role + "|>")
			b.text("\n", m.Content)
			b.special("<|end|>")
			b.text("\n")
		}
		b.special("<|assistant|>")
		b.text("\n")
	case Zephyr:
		for _, m := range msgs {
			b.special("<|" + m.Role + "|>")
			b.text("\n", m.Content)
			b.special(t.eos)
			b.text("\n")
		}
		b.special("<|assistant|>")
		b.text("\n")
	case Llama2:
		err = t.renderLlama2(&b, msgs)
	case Mistral:
		err = t.renderMistral(&b, msgs)
	default:
		for _, m := range msgs {
			b.text(m.Role, ": ", m.Content, "\n")
		}
		b.text("assistant:")
	}
	if err != nil {
		return nil, err
	}
	return b.p, nil
}

func (t Template) renderChatML(b *builder, msgs []Message) {
	if msgs[0].Role != RoleSystem && t.system != "" {
		b.special("<|im_start|>")
		b.text("system\n", t.system)
		b.special("<|im_end|>")
		b.text("\n")
	}
	for _, m := range msgs {
		b.special("<|im_start|>")
		b.text(m.Role, "\n", m.Content)
		b.special("<|im_end|>")
		b.text("\n")
	}
	b.special("<|im_start|>")
	b.text("assistant\n")
}

func (t Template) renderLlama3(b *builder, msgs []Message) {
	turn := func(role, content string) {
		b.special("<|start_header_id|>")
		b.text(role)
		b.special("<|end_header_id|>")
		b.text("\n\n", content)
		b.special("<|eot_id|>")
	}
	if t.llama31 {
		sys := ""
		if msgs[0].Role == RoleSystem {
			sys = strings.TrimSpace(msgs[0].Content)
			msgs = msgs[1:]
		}
		turn(RoleSystem, llama31Header+sys)
	}
	for _, m := range msgs {
		turn(m.Role, strings.TrimSpace(m.Content))
	}
	b.special("<|start_header_id|>")
	b.text("assistant")
	b.special("<|end_header_id|>")
	b.text("\n\n")
}

// alternating splits off a leading system message and checks that the rest
// alternate user/assistant starting with user.
func alternating(msgs []Message) (sys string, hasSys bool, rest []Message, err error) {
	if msgs[0].Role == RoleSystem {
		sys, hasSys, msgs = msgs[0].Content, true, msgs[1:]
	}
	off := 0
	if hasSys {
		off = 1
	}
	for i, m := range msgs {
		if m.Role == RoleSystem {
			return "", false, nil, fmt.Errorf("%w: messages[%d] is a system message; this model's template accepts one only as the first message", ErrOrder, i+off)
		}
		if (m.Role == RoleUser) != (i%2 == 0) {
			return "", false, nil, fmt.Errorf("%w: messages[%d] has role %s", ErrOrder, i+off, m.Role)
		}
	}
	return sys, hasSys, msgs, nil
}

func (t Template) renderLlama2(b *builder, msgs []Message) error {
	sys, hasSys, msgs, err := alternating(msgs)
	if err != nil {
		return err
	}
	for i, m := range msgs {
		content := m.Content
		if i == 0 && hasSys {
			content = "<<SYS>>\n" + sys + "\n<</SYS>>\n\n" + content
		}
		if m.Role == RoleUser {
			if i > 0 {
				b.special(t.bos)
			}
			b.text("[INST] ", strings.TrimSpace(content), " [/INST]")
		} else {
			b.text(" ", strings.TrimSpace(content), " ")
			b.special(t.eos)
		}
	}
	return nil
}

func (t Template) renderMistral(b *builder, msgs []Message) error {
	sys, hasSys, msgs, err := alternating(msgs)
	if err != nil {
		return err
	}
	for i, m := range msgs {
		if m.Role == RoleUser {
			content := m.Content
			if i == 0 && hasSys {
				content = sys + "\n\n" + content
			}
			b.text("[INST] ", content, " [/INST]")
		} else {
			b.text(m.Content)
			b.special(t.eos)
		}
	}
	return nil
}

func (t Template) renderGemma(b *builder, msgs []Message) error {
	sys, hasSys, msgs, err := alternating(msgs)
	if err != nil {
		return err
	}
	for i, m := range msgs {
		role := m.Role
		if role == RoleAssistant {
			role = "model"
		}
		b.special("<start_of_turn>")
		b.text(role, "\n")
		if i == 0 && hasSys {
			b.text(sys, "\n\n")
		}
		b.text(strings.TrimSpace(m.Content))
		b.special("<end_of_turn>")
		b.text("\n")
	}
	b.special("<start_of_turn>")
	b.text("model\n")
	return nil
}
