// Package serve runs an HTTP server for the life of a context, the way flotilla's plain endpoints (/metrics,
// /healthz and /readyz) all do.
package serve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
)

// Until serves handler on l in the background until ctx ends; what names the endpoints in the log line of an
// error that ends serving early.
func Until(ctx context.Context, l net.Listener, handler http.Handler, what string) {
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logrus.Errorf("%s: %v", what, err)
		}
	}()
}
