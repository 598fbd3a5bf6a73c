package dispatch

import (
	"fmt"

	"github.com/duet-llm/duet/kvtransfer"
)

// descriptorToken extracts the capability token from a reservation's
// kvtransfer descriptor (the decode node wants it back on Attach).
func descriptorToken(b []byte) ([]byte, error) {
	var d kvtransfer.Descriptor
	if err := d.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("reservation descriptor: %w", err)
	}
	return d.Token[:], nil
}
