// Package load generates load for an OpenAI-compatible server and times
// what comes back: the workload (who asks what, when), the streaming
// client, and the runner that drives one against the other.
//
// # Workload
//
// A workload is one or more request classes, each with a weight and
// prompt and output lengths (fixed or uniform), or a JSONL file of
// prompts; and an arrival process: open loop (Poisson or constant rate,
// requests sent at their planned time whatever the server does, as real
// users arrive) or closed loop (a fixed number of requests in flight,
// each sent when one ends). Open loop is the one that shows queueing:
// a closed loop slows down with the server and hides it.
//
// Everything random comes from two seeded PCG streams, one for the
// content (class, lengths, prompt tokens) and one for the arrival gaps,
// so the same seed sends the same requests to every deployment and a rate
// sweep sends the same prompts at each rate. Prompts are random token ids
// (exact lengths, and no prefix cache can help) or, for servers that take
// only text, random common English words, about one token each.
//
// # Timing
//
// Each request is a streaming call ("stream": true, with
// stream_options.include_usage). Time to first token (TTFT) runs from
// sending the request to the first chunk that carries text; inter-token
// latency (ITL) is the gap between consecutive text chunks (a chunk may
// carry more than one token when the server holds text back, e.g. an
// incomplete UTF-8 character); end-to-end latency runs to [DONE]. Output
// tokens are the server's usage count when it sends one, else the text
// chunks. Output length is set by max_tokens; a model may stop earlier
// at its end-of-sequence token, and what arrived is what is counted
// ("ignore_eos" is sent only when asked, as not every server accepts it).
//
// An open-loop arrival is sent at its planned time unless MaxInFlight
// requests are already running; the sample keeps both times, so a load
// generator that fell behind is visible rather than silently turned into
// a closed loop.
package load
