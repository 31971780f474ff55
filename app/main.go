// Command dockyard-app is the sample service that the Dockyard pipeline builds,
// pushes and deploys. Its one dependency, github.com/golang-jwt/jwt/v4, reads bearer tokens on
// /whoami; its version is a build argument so that tests can build a release that the scanner
// must refuse (Dockerfile: JWT_VERSION).
//
// Endpoints:
//
//	GET /health  200 {"status":"ok","version":...}
//	             503 {"status":"fail",...} when built with -X main.healthFail=true
//	GET /        200 {"message":"hello from dockyard-app","version":...}
//	GET /whoami  200 {"subject":...} for an HS256 bearer token signed with $APP_TOKEN_KEY;
//	             401 for any other token; 404 when APP_TOKEN_KEY is not set
//	GET /visits  200 {"visits":N}, the visit count kept in the Redis-protocol cache at $DOCKYARD_CACHE_ADDR
//	             (host:port); 503 when the cache does not answer; 404 when DOCKYARD_CACHE_ADDR is not set
//
// Modes:
//
//	dockyard-app                      serve on $PORT (default 8080) until SIGTERM/SIGINT
//	dockyard-app -smoke URL           check URL/health and URL/ and exit 0 (ok) or 1 (failed)
//	dockyard-app -version             print the version and exit
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Set at build time:
//
//	go build -ldflags "-X main.version=1.2.3 -X main.healthFail=true"
var (
	version    = "dev"
	healthFail = "false"
)

const (
	defaultPort     = "8080"
	shutdownTimeout = 10 * time.Second
	serviceName     = "dockyard-app"
)

// config is what the handlers need; it is resolved once at start-up.
type config struct {
	Version    string
	HealthFail bool
	// TokenKey verifies the bearer tokens of /whoami (HS256); empty: /whoami is not served.
	TokenKey []byte
	// CacheAddr is the cache's host:port (DOCKYARD_CACHE_ADDR); empty: /visits is not served.
	CacheAddr string
}

// resolveConfig combines the build-time values with the environment.
// APP_VERSION, when set and not empty, overrides the version baked in with -ldflags.
// The health-failure switch is build-time only on purpose: the image itself is the
// "bad release" used to exercise automatic rollback.
func resolveConfig(getenv func(string) string) config {
	v := version
	if env := strings.TrimSpace(getenv("APP_VERSION")); env != "" {
		v = env
	}
	if v == "" {
		v = "dev"
	}
	fail, _ := strconv.ParseBool(healthFail)
	return config{
		Version: v, HealthFail: fail, TokenKey: []byte(getenv("APP_TOKEN_KEY")),
		CacheAddr: strings.TrimSpace(getenv("DOCKYARD_CACHE_ADDR")),
	}
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

type healthResponse struct {
	Status  string `json:"status"`
	Version string `json:"version"`
}

type helloResponse struct {
	Message string `json:"message"`
	Service string `json:"service"`
	Version string `json:"version"`
}

// newHandler returns the service's HTTP routes.
func newHandler(cfg config) http.Handler {
	mux := http.NewServeMux()
	// "GET" patterns also match HEAD; other methods get 405 from the mux.
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		if cfg.HealthFail {
			writeJSON(w, http.StatusServiceUnavailable, healthResponse{Status: "fail", Version: cfg.Version})
			return
		}
		writeJSON(w, http.StatusOK, healthResponse{Status: "ok", Version: cfg.Version})
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		if len(cfg.TokenKey) == 0 {
			http.NotFound(w, r)
			return
		}
		subject, err := tokenSubject(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), cfg.TokenKey)
		if err != nil {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid token"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"subject": subject})
	})
	visits := newVisitCounter(cfg.CacheAddr)
	mux.HandleFunc("GET /visits", func(w http.ResponseWriter, r *http.Request) {
		if visits == nil {
			http.NotFound(w, r)
			return
		}
		n, err := visits.hit(r.Context())
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "cache unavailable"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]int64{"visits": n})
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, helloResponse{
			Message: "hello from " + serviceName,
			Service: serviceName,
			Version: cfg.Version,
		})
	})
	return mux
}

// listenAddr returns the address to listen on from $PORT.
func listenAddr(getenv func(string) string) (string, error) {
	port := strings.TrimSpace(getenv("PORT"))
	if port == "" {
		port = defaultPort
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("invalid PORT %q: want a number from 1 to 65535", port)
	}
	return ":" + port, nil
}

// serve runs srv on ln until ctx is done, then shuts down gracefully:
// in-flight requests get up to shutdownTimeout to finish.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, logger *log.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Printf("shutting down (grace %s)", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Printf("stopped")
	return nil
}

func newServer(cfg config) *http.Server {
	return &http.Server{
		Handler:           newHandler(cfg),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
}

// smoke checks a running instance at base (for example http://127.0.0.1:8080):
// /health must answer 200 with status "ok" and / must answer 200 with a version.
func smoke(base string, timeout time.Duration, out io.Writer) error {
	base = strings.TrimRight(strings.TrimSpace(base), "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return fmt.Errorf("smoke: URL must start with http:// or https://, got %q", base)
	}
	client := &http.Client{Timeout: timeout}

	get := func(path string, into any) (int, error) {
		resp, err := client.Get(base + path)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return resp.StatusCode, err
		}
		if err := json.Unmarshal(body, into); err != nil {
			return resp.StatusCode, fmt.Errorf("GET %s: body is not JSON: %w", path, err)
		}
		return resp.StatusCode, nil
	}

	var h healthResponse
	code, err := get("/health", &h)
	if err != nil {
		return fmt.Errorf("smoke: GET /health: %w", err)
	}
	if code != http.StatusOK || h.Status != "ok" {
		return fmt.Errorf("smoke: GET /health: HTTP %d status=%q version=%q, want 200 and \"ok\"", code, h.Status, h.Version)
	}
	fmt.Fprintf(out, "ok   GET %s/health -> %d status=%s version=%s\n", base, code, h.Status, h.Version)

	var hello helloResponse
	code, err = get("/", &hello)
	if err != nil {
		return fmt.Errorf("smoke: GET /: %w", err)
	}
	if code != http.StatusOK || hello.Version == "" {
		return fmt.Errorf("smoke: GET /: HTTP %d version=%q, want 200 and a version", code, hello.Version)
	}
	fmt.Fprintf(out, "ok   GET %s/ -> %d version=%s\n", base, code, hello.Version)
	return nil
}

// run is main without the process exit, so that tests can drive it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(serviceName, flag.ContinueOnError)
	fs.SetOutput(stderr)
	smokeURL := fs.String("smoke", "", "check a running instance at this base URL (e.g. http://127.0.0.1:8080) and exit 0/1")
	smokeTimeout := fs.Duration("smoke-timeout", 5*time.Second, "per-request timeout for -smoke")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg := resolveConfig(getenv)

	switch {
	case *showVersion:
		fmt.Fprintln(stdout, cfg.Version)
		return 0
	case *smokeURL != "":
		if err := smoke(*smokeURL, *smokeTimeout, stdout); err != nil {
			fmt.Fprintln(stderr, "FAIL", err)
			return 1
		}
		return 0
	}

	logger := log.New(stderr, serviceName+" ", log.LstdFlags|log.LUTC)
	addr, err := listenAddr(getenv)
	if err != nil {
		logger.Print(err)
		return 2
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		logger.Print(err)
		return 1
	}
	logger.Printf("version %s listening on %s (health-fail=%t)", cfg.Version, ln.Addr(), cfg.HealthFail)
	if err := serve(ctx, newServer(cfg), ln, logger); err != nil {
		logger.Print(err)
		return 1
	}
	return 0
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
