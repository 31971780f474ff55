package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v4"
)

func signed(t *testing.T, key string, claims jwt.Claims) string {
	t.Helper()
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func TestWhoami(t *testing.T) {
	h := newHandler(config{Version: "x", TokenKey: []byte("k")})
	cases := []struct {
		name, token string
		want        int
	}{
		{"signed with the key", signed(t, "k", jwt.RegisteredClaims{Subject: "ana"}), http.StatusOK},
		{"another key", signed(t, "other", jwt.RegisteredClaims{Subject: "ana"}), http.StatusUnauthorized},
		{"no subject", signed(t, "k", jwt.RegisteredClaims{}), http.StatusUnauthorized},
		{"not a token", strings.Repeat(".", 64), http.StatusUnauthorized},
	}
	for _, c := range cases {
		req := httptest.NewRequest(http.MethodGet, "/whoami", nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s: %d, want %d", c.name, rec.Code, c.want)
		}
	}
}

func TestWhoamiNeedsAKey(t *testing.T) {
	rec := httptest.NewRecorder()
	newHandler(config{Version: "x"}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/whoami", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("no APP_TOKEN_KEY: %d, want 404", rec.Code)
	}
}
