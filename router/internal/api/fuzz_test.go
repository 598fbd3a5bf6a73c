package api

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

var (
	fuzzOnce sync.Once
	fuzzAPI  *API
)

// fuzzServer is one API (a small context so that context errors are
// reachable, a quick scripted generator) shared by the fuzz inputs.
func fuzzServer(t testing.TB) *API {
	m := storiesModel(t, "s", 64)
	fuzzOnce.Do(func() {
		g := newScripted(m.Tokenizer)
		g.ids = g.ids[:5]
		cfg := testConfig(m)
		a, err := New(cfg, g, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		fuzzAPI = a
	})
	return fuzzAPI
}

// checkAnswer asserts that any body gets a 2xx or 4xx with a well-formed
// body: a JSON object (an error body on 4xx), or a well-framed event
// stream.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	switch {
	case rec.Code >= 200 && rec.Code < 300:
		if rec.Header().Get("Content-Type") == "text/event-stream" {
			evs := events(t, rec.Body.Bytes())
			if len(evs) == 0 {
				t.Fatal("empty stream")
			}
			return
		}
		var v map[string]json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || v["choices"] == nil {
			t.Fatalf("200 with body %q: %v", rec.Body, err)
		}
	case rec.Code >= 400 && rec.Code < 500:
		errorShape(t, rec.Body.Bytes())
	default:
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
}

func fuzzBody(f *testing.F, path string) {
	f.Fuzz(func(t *testing.T, body []byte) {
		a := fuzzServer(t)
		rec := serveRecorded(a, path, string(body))
		checkAnswer(t, rec)
		if a.adm.running() != 0 || a.adm.waiting() != 0 {
			t.Fatal("admission state leaked")
		}
	})
}

// FuzzCompletions drives the /v1/completions request decoder (seeds in
// testdata/fuzz/FuzzCompletions).
func FuzzCompletions(f *testing.F) { fuzzBody(f, "/v1/completions") }

// FuzzChat drives the /v1/chat/completions request decoder (seeds in
// testdata/fuzz/FuzzChat).
func FuzzChat(f *testing.F) { fuzzBody(f, "/v1/chat/completions") }

// TestFuzzSeedsCover makes sure the seed corpus exercises success, streams
// and errors on both endpoints, so the seeds stay meaningful.
func TestFuzzSeedsCover(t *testing.T) {
	a := fuzzServer(t)
	for _, ep := range []string{"Completions", "Chat"} {
		seeds, err := readSeeds("testdata/fuzz/Fuzz" + ep)
		if err != nil {
			t.Fatal(err)
		}
		codes := map[int]int{}
		streams := 0
		for _, s := range seeds {
			rec := serveRecorded(a, "/v1/"+map[string]string{"Completions": "completions", "Chat": "chat/completions"}[ep], s)
			checkAnswer(t, rec)
			codes[rec.Code]++
			if strings.HasPrefix(rec.Body.String(), "data: ") {
				streams++
			}
		}
		if codes[200] == 0 || codes[400] == 0 || streams == 0 || len(seeds) < 10 {
			t.Errorf("%s seeds: %d seeds, statuses %v, %d streams", ep, len(seeds), codes, streams)
		}
	}
}
