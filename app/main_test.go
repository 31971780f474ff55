package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func withBuildVars(t *testing.T, v, fail string) {
	t.Helper()
	oldV, oldF := version, healthFail
	version, healthFail = v, fail
	t.Cleanup(func() { version, healthFail = oldV, oldF })
}

func do(t *testing.T, h http.Handler, method, path string) (*http.Response, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return res, body
}

func TestHealthOK(t *testing.T) {
	res, body := do(t, newHandler(config{Version: "1.2.3"}), http.MethodGet, "/health")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var got healthResponse
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if got != (healthResponse{Status: "ok", Version: "1.2.3"}) {
		t.Errorf("got %+v", got)
	}
}

func TestHealthFailVariant(t *testing.T) {
	withBuildVars(t, "9.9.9", "true")
	cfg := resolveConfig(env(nil))
	if !cfg.HealthFail {
		t.Fatal("healthFail=true must switch the variant on")
	}
	res, body := do(t, newHandler(cfg), http.MethodGet, "/health")
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", res.StatusCode)
	}
	var got healthResponse
	if err := json.Unmarshal(body, &got); err != nil || got.Status != "fail" || got.Version != "9.9.9" {
		t.Fatalf("body %q (%v)", body, err)
	}
	// The root endpoint still works: only the health check fails.
	if res, _ := do(t, newHandler(cfg), http.MethodGet, "/"); res.StatusCode != http.StatusOK {
		t.Errorf("GET / status %d, want 200", res.StatusCode)
	}
}

func TestHealthFailIsBuildTimeOnly(t *testing.T) {
	withBuildVars(t, "1.0.0", "false")
	if resolveConfig(env(map[string]string{"HEALTH_FAIL": "true"})).HealthFail {
		t.Fatal("HEALTH_FAIL in the environment must not switch the variant on")
	}
}

func TestHello(t *testing.T) {
	res, body := do(t, newHandler(config{Version: "2.0.0"}), http.MethodGet, "/")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	var got helloResponse
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Version != "2.0.0" || got.Service != serviceName || !strings.Contains(got.Message, "hello") {
		t.Errorf("got %+v", got)
	}
}

func TestRoutes(t *testing.T) {
	h := newHandler(config{Version: "x"})
	cases := []struct {
		method, path string
		want         int
	}{
		{http.MethodHead, "/health", http.StatusOK},
		{http.MethodHead, "/", http.StatusOK},
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodGet, "/health/extra", http.StatusNotFound},
		{http.MethodPost, "/health", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/", http.StatusMethodNotAllowed},
	}
	for _, c := range cases {
		if res, _ := do(t, h, c.method, c.path); res.StatusCode != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, res.StatusCode, c.want)
		}
	}
}

func TestVersionResolution(t *testing.T) {
	withBuildVars(t, "1.0.0", "false")
	if v := resolveConfig(env(nil)).Version; v != "1.0.0" {
		t.Errorf("ldflags version: got %q", v)
	}
	if v := resolveConfig(env(map[string]string{"APP_VERSION": " 1.0.1 "})).Version; v != "1.0.1" {
		t.Errorf("APP_VERSION override: got %q", v)
	}
	withBuildVars(t, "", "not-a-bool")
	cfg := resolveConfig(env(nil))
	if cfg.Version != "dev" || cfg.HealthFail {
		t.Errorf("fallbacks: got %+v", cfg)
	}
}

func TestListenAddr(t *testing.T) {
	for in, want := range map[string]string{"": ":8080", "9090": ":9090", " 80 ": ":80"} {
		got, err := listenAddr(env(map[string]string{"PORT": in}))
		if err != nil || got != want {
			t.Errorf("PORT=%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"abc", "0", "65536", "-1", "80x"} {
		if _, err := listenAddr(env(map[string]string{"PORT": bad})); err == nil {
			t.Errorf("PORT=%q: want an error", bad)
		}
	}
}

func TestSmoke(t *testing.T) {
	ok := httptest.NewServer(newHandler(config{Version: "3.0.0"}))
	defer ok.Close()
	var out bytes.Buffer
	if err := smoke(ok.URL+"/", 2*time.Second, &out); err != nil {
		t.Fatalf("healthy server: %v", err)
	}
	if !strings.Contains(out.String(), "version=3.0.0") {
		t.Errorf("output %q", out.String())
	}

	bad := httptest.NewServer(newHandler(config{Version: "3.0.1", HealthFail: true}))
	defer bad.Close()
	if err := smoke(bad.URL, 2*time.Second, io.Discard); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("failing server: got %v, want an error naming 503", err)
	}

	notJSON := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "<html>")
	}))
	defer notJSON.Close()
	if err := smoke(notJSON.URL, 2*time.Second, io.Discard); err == nil {
		t.Fatal("non-JSON server: want an error")
	}

	if err := smoke("127.0.0.1:1", time.Second, io.Discard); err == nil {
		t.Fatal("URL without scheme: want an error")
	}
}

func TestRunSmokeExitCodes(t *testing.T) {
	srv := httptest.NewServer(newHandler(config{Version: "4.0.0"}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-smoke", srv.URL}, env(nil), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}

	// A closed port: connection refused, exit 1.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	stderr.Reset()
	if code := run(context.Background(), []string{"-smoke", "http://" + addr, "-smoke-timeout", "1s"}, env(nil), io.Discard, &stderr); code != 1 {
		t.Fatalf("closed port: exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "FAIL") {
		t.Errorf("stderr %q", stderr.String())
	}

	if code := run(context.Background(), []string{"-no-such-flag"}, env(nil), io.Discard, io.Discard); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
}

func TestRunVersion(t *testing.T) {
	withBuildVars(t, "5.0.0", "false")
	var out bytes.Buffer
	if code := run(context.Background(), []string{"-version"}, env(nil), &out, io.Discard); code != 0 || strings.TrimSpace(out.String()) != "5.0.0" {
		t.Fatalf("exit %d, out %q", code, out.String())
	}
}

func TestRunRejectsBadPort(t *testing.T) {
	if code := run(context.Background(), nil, env(map[string]string{"PORT": "http"}), io.Discard, io.Discard); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
}

// TestGracefulShutdown starts the real server, holds a request in flight, cancels
// the context (what SIGTERM does) and checks the request still completes.
func TestGracefulShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	started := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "done")
	})
	mux.Handle("/", newHandler(config{Version: "g"}))
	srv := newServer(config{Version: "g"})
	srv.Handler = mux

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs bytes.Buffer
	served := make(chan error, 1)
	go func() { served <- serve(ctx, srv, ln, log.New(&logs, "", 0)) }()

	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 5 * time.Second}
	res, err := client.Get(base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	slow := make(chan string, 1)
	go func() {
		r, err := client.Get(base + "/slow")
		if err != nil {
			slow <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		slow <- string(b)
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("slow request never arrived")
	}

	cancel() // as on SIGTERM
	time.Sleep(100 * time.Millisecond)
	close(release)

	select {
	case got := <-slow:
		if got != "done" {
			t.Errorf("in-flight request: %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request did not finish")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(shutdownTimeout + 2*time.Second):
		t.Fatal("server did not stop")
	}
	if _, err := client.Get(base + "/health"); err == nil {
		t.Error("server still answering after shutdown")
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("logs %q", logs.String())
	}
}

func TestVisitsNeedACache(t *testing.T) {
	if res, _ := do(t, newHandler(resolveConfig(env(nil))), http.MethodGet, "/visits"); res.StatusCode != http.StatusNotFound {
		t.Errorf("without DOCKYARD_CACHE_ADDR: status %d, want 404", res.StatusCode)
	}
	// Nothing listens on port 1: the cache is named but down, and the app says so instead of failing.
	cfg := resolveConfig(env(map[string]string{"DOCKYARD_CACHE_ADDR": "127.0.0.1:1"}))
	if res, body := do(t, newHandler(cfg), http.MethodGet, "/visits"); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("cache down: status %d (%s), want 503", res.StatusCode, body)
	}
}
