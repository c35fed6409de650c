package bus

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Dial connects to cfg's external server (cfg.URL, required) with cfg's
// authentication, declaring nothing: for a short exchange before the bus
// starts (cluster mode reads the shared keyring so). It fails at once if no
// server answers; close the connection after use.
func Dial(cfg Config) (*nats.Conn, error) {
	if cfg.URL == "" {
		return nil, fmt.Errorf("bus: dial needs an external server URL")
	}
	b := &Bus{cfg: cfg}
	opts, err := b.authOptions()
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Name("vigie"), nats.Timeout(2*time.Second))
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect: %w", err)
	}
	return nc, nil
}
