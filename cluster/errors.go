package cluster

import "errors"

// Errors of this package. Wrapped errors carry detail; test with errors.Is.
var (
	ErrBadID         = errors.New("cluster: bad node id")
	ErrBadRole       = errors.New("cluster: bad role")
	ErrBadKey        = errors.New("cluster: bad node key")
	ErrBadDescriptor = errors.New("cluster: bad node descriptor")
	ErrBadMessage    = errors.New("cluster: bad gossip message")
	ErrBadConfig     = errors.New("cluster: bad config")
	ErrRunning       = errors.New("cluster: already running")
)
