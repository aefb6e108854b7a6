package httptarget

import (
	"context"
	"encoding/json"

	"github.com/ferry-sync/ferry/engine/connector"
)

// Kind is the http connection kind, for a connector.Registry.
func Kind() connector.Kind {
	return connector.Kind{
		Name: "http",
		Check: func(settings json.RawMessage) error {
			var cfg Config
			if err := connector.DecodeStrict(settings, &cfg); err != nil {
				return err
			}
			return Check(cfg)
		},
		Open: func(ctx context.Context, settings json.RawMessage, env connector.LookupEnv) (connector.Target, error) {
			var cfg Config
			if err := connector.DecodeStrict(settings, &cfg); err != nil {
				return nil, &connector.SettingsError{Err: err}
			}
			cfg.Env = env
			return New(ctx, cfg)
		},
	}
}
