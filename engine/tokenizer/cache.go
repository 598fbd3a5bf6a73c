package tokenizer

import (
	"hash/maphash"
	"sync"
)

// wordCache remembers the BPE ids of recent pre-tokens. English text
// repeats its words, and a word's merges cost a few hundred nanoseconds
// while a lookup costs tens. It is bounded: a shard that fills up is
// emptied, so memory stays under cacheShards*cacheShardWords entries.
type wordCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

const (
	cacheShards     = 16
	cacheShardWords = 2048
	cacheMaxWord    = 64 // longer pre-tokens are not cached
)

type cacheShard struct {
	mu sync.Mutex
	m  map[string][]int32
}

func newWordCache() *wordCache {
	return &wordCache{seed: maphash.MakeSeed()}
}

func (c *wordCache) shard(word string) *cacheShard {
	return &c.shards[maphash.String(c.seed, word)%cacheShards]
}

// appendTo appends the cached ids of word to out.
func (c *wordCache) appendTo(word string, out []int32) ([]int32, bool) {
	s := c.shard(word)
	s.mu.Lock()
	ids, ok := s.m[word]
	if ok {
		out = append(out, ids...)
	}
	s.mu.Unlock()
	return out, ok
}

func (c *wordCache) put(word string, ids []int32) {
	s := c.shard(word)
	ids = append([]int32(nil), ids...)
	s.mu.Lock()
	if s.m == nil || len(s.m) >= cacheShardWords {
		s.m = make(map[string][]int32, cacheShardWords/4)
	}
	s.m[word] = ids
	s.mu.Unlock()
}
