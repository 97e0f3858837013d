// Command ferretdb runs FerretDB v1 (MongoDB wire protocol over PostgreSQL or SQLite) for Lawtrail's
// local stack.
//
// It exists because `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2` builds a binary
// that panics at start (a generated version file is missing from the published module). Embedding
// the github.com/FerretDB/FerretDB/ferretdb package from a module of our own avoids that check.
// Production uses MongoDB; nothing in Lawtrail may depend on this stand-in.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listenAddr := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	handler := flag.String("handler", "sqlite", "backend: sqlite or postgresql")
	sqliteDir := flag.String("sqlite-dir", "", "existing directory for the SQLite files (one per database), for -handler sqlite")
	postgresqlURL := flag.String("postgresql-url", "", "postgres://user@127.0.0.1:port/db, for -handler postgresql")
	debug := flag.Bool("debug", false, "log at debug level")
	flag.Parse()

	if err := run(*listenAddr, *handler, *sqliteDir, *postgresqlURL, *debug); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}
}

func run(listenAddr, handler, sqliteDir, postgresqlURL string, debug bool) error {
	config := ferretdb.Config{Listener: ferretdb.ListenerConfig{TCP: listenAddr}, Handler: handler}

	switch handler {
	case "sqlite":
		if sqliteDir == "" {
			return errors.New("-sqlite-dir is required with -handler sqlite")
		}

		// FerretDB's SQLite handler wants an existing directory, given as a URI ending in "/".
		dir, err := filepath.Abs(sqliteDir)
		if err != nil {
			return err
		}

		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("-sqlite-dir %q is not an existing directory", dir)
		}

		config.SQLiteURL = "file:" + dir + "/"
	case "postgresql":
		if postgresqlURL == "" {
			return errors.New("-postgresql-url is required with -handler postgresql")
		}

		config.PostgreSQLURL = postgresqlURL
	default:
		return fmt.Errorf("-handler %q: choose sqlite or postgresql", handler)
	}

	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// SIGTERM is how the launcher stops us; cancelling the context closes listeners and the backend.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	config.Logger = logger

	f, err := ferretdb.New(&config)
	if err != nil {
		return err
	}

	// New has already bound the listener, so a port in use fails above, before this line.
	logger.Info("ferretdb listening", "uri", f.MongoDBURI())

	return f.Run(ctx)
}
