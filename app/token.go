package main

import (
	"errors"

	"github.com/golang-jwt/jwt/v4"
)

// tokenSubject returns the subject of an HS256 token signed with key; any other token is an error.
func tokenSubject(token string, key []byte) (string, error) {
	claims := &jwt.RegisteredClaims{}
	parsed, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}))
	if err != nil {
		return "", err
	}
	if !parsed.Valid || claims.Subject == "" {
		return "", errors.New("token has no subject")
	}
	return claims.Subject, nil
}
