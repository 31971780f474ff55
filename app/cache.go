package main

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Set at build time (Dockerfile: CACHE_FAIL): true makes the app count two visits per request, a bug that only a
// real cache shows; the integration tests must catch it before the image is pushed.
var cacheFail = "false"

// visitsKey is the cache key of the visit counter.
const visitsKey = "dockyard-app:visits"

const cacheTimeout = 2 * time.Second

// visitCounter counts visits in a Redis-protocol cache at DOCKYARD_CACHE_ADDR. The deployed stacks have no cache:
// without an address there is no counter and /visits answers 404.
type visitCounter struct {
	client *redis.Client
	step   int64
}

// newVisitCounter returns nil when addr is empty. The client connects on first use, so the app starts (and its
// /health answers) whether or not the cache is up.
func newVisitCounter(addr string) *visitCounter {
	if addr == "" {
		return nil
	}
	step := int64(1)
	if fail, _ := strconv.ParseBool(cacheFail); fail {
		step = 2
	}
	return &visitCounter{
		client: redis.NewClient(&redis.Options{
			Addr: addr, DialTimeout: cacheTimeout, ReadTimeout: cacheTimeout, WriteTimeout: cacheTimeout,
		}),
		step: step,
	}
}

// hit counts one visit and returns the count so far.
func (c *visitCounter) hit(ctx context.Context) (int64, error) {
	return c.client.IncrBy(ctx, visitsKey, c.step).Result()
}
