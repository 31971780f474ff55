//go:build integration

// Integration tests: the app against a real Redis-protocol cache at $DOCKYARD_CACHE_ADDR (host:port), as
// app/compose.integration.yaml runs them (`go test -tags integration`; the Dockerfile's `integration` stage).
package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// cache is a client of the cache at $DOCKYARD_CACHE_ADDR, its address, and a context that ends with the test.
func cache(t *testing.T) (*redis.Client, string, context.Context) {
	t.Helper()
	addr := os.Getenv("DOCKYARD_CACHE_ADDR")
	if addr == "" {
		t.Fatal("DOCKYARD_CACHE_ADDR is not set: the integration tests need the cache's host:port (compose service cache)")
	}
	client := redis.NewClient(&redis.Options{Addr: addr})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(func() { cancel(); _ = client.Close() })
	return client, addr, ctx
}

func TestIntegrationCacheAnswersPing(t *testing.T) {
	client, addr, ctx := cache(t)
	got, err := client.Ping(ctx).Result()
	if err != nil || got != "PONG" {
		t.Fatalf("PING %s: got %q, %v; want PONG", addr, got, err)
	}
}

func TestIntegrationVisitsAreCountedInTheCache(t *testing.T) {
	client, addr, ctx := cache(t)
	if err := client.Del(ctx, visitsKey).Err(); err != nil {
		t.Fatalf("DEL %s at %s: %v", visitsKey, addr, err)
	}
	handler := newHandler(resolveConfig(env(map[string]string{"DOCKYARD_CACHE_ADDR": addr})))
	for want := int64(1); want <= 3; want++ {
		res, body := do(t, handler, http.MethodGet, "/visits")
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /visits: status %d (%s), want 200", res.StatusCode, body)
		}
		var got struct{ Visits int64 }
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("GET /visits: body %q: %v", body, err)
		}
		if got.Visits != want {
			t.Fatalf("GET /visits #%d: visits %d, want %d", want, got.Visits, want)
		}
	}
	stored, err := client.Get(ctx, visitsKey).Int64()
	if err != nil || stored != 3 {
		t.Fatalf("GET %s in the cache: %d, %v; want 3", visitsKey, stored, err)
	}
}
