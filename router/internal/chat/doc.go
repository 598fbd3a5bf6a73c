// Package chat turns an OpenAI chat conversation into the prompt a model was
// trained on, without a Jinja engine.
//
// A GGUF file carries its chat template as Jinja source
// (tokenizer.chat_template). Running arbitrary Jinja in the router would
// mean a large dependency and an attack surface (templates are code) for
// what is, in practice, a handful of layouts. So Detect recognizes the
// family from marker strings in the source and Render formats messages with
// a hand-written Go function that reproduces what Hugging Face's
// apply_chat_template(add_generation_prompt=True) renders for that family:
//
//	family   recognized by                       layout (one user turn)
//	chatml   <|im_start|>                        <|im_start|>user\n{u}<|im_end|>\n<|im_start|>assistant\n
//	llama3   <|start_header_id|>                 <|start_header_id|>user<|end_header_id|>\n\n{u}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n
//	gemma    <start_of_turn>                     <start_of_turn>user\n{u}<end_of_turn>\n<start_of_turn>model\n
//	phi3     <|user|> and <|end|>                <|user|>\n{u}<|end|>\n<|assistant|>\n
//	zephyr   <|user|> (no <|end|>)               <|user|>\n{u}</s>\n<|assistant|>\n
//	llama2   [INST] and <<SYS>>                  [INST] {u} [/INST]
//	mistral  [INST] (no <<SYS>>)                 [INST] {u} [/INST]
//	default  anything else, or no template       user: {u}\nassistant:
//
// The markers are tested in that order (a ChatML template on a Llama 3
// vocabulary is ChatML).
//
// # System prompts
//
// Each family treats a system message as its reference template does:
//   - chatml, llama3, phi3, zephyr, default: a turn of its own, anywhere.
//     A ChatML template that inserts a default system prompt when the
//     conversation has none (Qwen2's "You are a helpful assistant.",
//     SmolLM2's) is detected and the literal prompt is reused.
//   - llama3.1 (a Llama 3 template that mentions "Cutting Knowledge Date"):
//     the system turn is always rendered and starts with the knowledge
//     dates; the date is the template's default, "26 Jul 2024" (Hugging
//     Face's 3.2 templates print today's date instead; duet does not, so
//     the rendering does not depend on the clock).
//   - llama2: only as the first message, folded into the first user turn
//     inside <<SYS>> ... <</SYS>>.
//   - mistral and gemma: only as the first message, prepended to the first
//     user turn followed by a blank line (Mistral v0.3 and Gemma 3 do this;
//     Gemma 1/2 templates refuse system messages).
//
// llama2, mistral and gemma templates refuse conversations whose turns,
// after the system message, do not alternate user/assistant starting with
// user; Render returns ErrOrder for them, as vLLM returns the template's
// exception as a 400. Content is trimmed where the template trims it (llama2,
// llama3, gemma).
//
// # Special tokens and BOS
//
// Render returns a Prompt: a list of Segments, each either text or the text
// of a special token that the template emits (<|im_start|>, <|eot_id|>, the
// model's EOS). The caller tokenizes text segments as plain text and
// special segments as the token they name, so message content can never
// inject a turn boundary: "<|im_end|>" typed by a user stays text. The
// leading BOS that many templates start with is not part of the Prompt;
// the caller adds it when the tokenizer says the model wants one. BOS and
// EOS inside the conversation (llama2's "</s><s>" between turns, zephyr's
// "</s>") come from Specials.
package chat
