package clusterstate

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"

	"chat/internal/auth"
	"chat/internal/jetstream"
)

// Keys of the secrets bucket.
const (
	// sessionKey holds the secret that signs sessions, with the
	// fingerprint of the room's keys it signs them for.
	sessionKey = "session"
	// identityKey holds the secret that signs identity cookies.
	identityKey = "identity"
	// secretTries bounds the rounds of reading and writing a secret while
	// other nodes write it too.
	secretTries = 5
)

// Secrets are the room's secrets, shared by every node in the secrets
// bucket. Its methods are safe for concurrent use.
type Secrets struct {
	kv *jetstream.KV
}

// secretValue is a secret as the bucket keeps it: its bytes (base64 in
// JSON) and, for the session secret, the fingerprint of the keys it signs
// sessions for (auth.Fingerprint).
type secretValue struct {
	Secret []byte `json:"secret"`
	Keys   string `json:"keys,omitempty"`
}

// OpenSecrets opens the secrets bucket within ctx.
func OpenSecrets(ctx context.Context, cfg Config) (*Secrets, error) {
	kv, err := openBucket(ctx, cfg, "secrets", false)
	if err != nil {
		return nil, err
	}
	return &Secrets{kv: kv}, nil
}

// Session returns the secret that signs the room's sessions for keys, as
// auth.LoadSessions does with a file: the first node makes it; a node
// started with other keys than the secret signs for replaces it (rotated),
// which ends every session for good, also when the keys change back. Every
// node of a room must run with the same keys. Nodes that start at once
// agree: each writes only if the secret is absent, or still the revision it
// read, and otherwise reads again.
func (s *Secrets) Session(ctx context.Context, keys auth.Keys) (secret []byte, rotated bool, err error) {
	for range secretTries {
		e, err := s.kv.Get(ctx, sessionKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			secret, err := s.create(ctx, sessionKey, func(secret []byte) string { return auth.Fingerprint(secret, keys) })
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			return secret, false, err
		}
		if err != nil {
			return nil, false, fmt.Errorf("session secret: %w", err)
		}
		v, err := decodeSecret(e.Value)
		if err != nil {
			return nil, false, fmt.Errorf("session secret: %w", err)
		}
		if hmac.Equal([]byte(v.Keys), []byte(auth.Fingerprint(v.Secret, keys))) {
			return v.Secret, false, nil
		}
		nv, err := newSecret(func(secret []byte) string { return auth.Fingerprint(secret, keys) })
		if err != nil {
			return nil, false, err
		}
		if _, err := s.kv.Update(ctx, sessionKey, nv.encode(), e.Revision); errors.Is(err, jetstream.ErrKeyExists) {
			continue // another node wrote it meanwhile: read it again
		} else if err != nil {
			return nil, false, fmt.Errorf("session secret: %w", err)
		}
		return nv.Secret, true, nil
	}
	return nil, false, errors.New("session secret: other nodes keep changing it; do they run with other keys?")
}

// Identity returns the secret that signs identity cookies: made by the
// first node, never replaced (a key change ends sessions, not identities).
func (s *Secrets) Identity(ctx context.Context) ([]byte, error) {
	for range secretTries {
		e, err := s.kv.Get(ctx, identityKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			secret, err := s.create(ctx, identityKey, nil)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			return secret, err
		}
		if err != nil {
			return nil, fmt.Errorf("identity secret: %w", err)
		}
		v, err := decodeSecret(e.Value)
		if err != nil {
			return nil, fmt.Errorf("identity secret: %w", err)
		}
		return v.Secret, nil
	}
	return nil, errors.New("identity secret: could not read or make it")
}

// create makes a new secret under key if the key has no value, with the
// fingerprint fp gives (none when fp is nil); jetstream.ErrKeyExists if
// another node made one first.
func (s *Secrets) create(ctx context.Context, key string, fp func([]byte) string) ([]byte, error) {
	v, err := newSecret(fp)
	if err != nil {
		return nil, err
	}
	if _, err := s.kv.Create(ctx, key, v.encode(), 0); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, err
		}
		return nil, fmt.Errorf("%s secret: %w", key, err)
	}
	return v.Secret, nil
}

// newSecret returns a new random secret with the fingerprint fp gives
// (none when fp is nil).
func newSecret(fp func([]byte) string) (secretValue, error) {
	secret, err := auth.NewSecret()
	if err != nil {
		return secretValue{}, err
	}
	v := secretValue{Secret: secret}
	if fp != nil {
		v.Keys = fp(secret)
	}
	return v, nil
}

// encode returns v as the bucket keeps it.
func (v secretValue) encode() []byte {
	b, _ := json.Marshal(v) // cannot fail: bytes and a string
	return b
}

// decodeSecret reads a secret from the bucket: exactly the fields of a
// secretValue, with at least auth.SecretSize bytes of secret.
func decodeSecret(data []byte) (secretValue, error) {
	var v secretValue
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, fmt.Errorf("value: %w", err)
	}
	if len(v.Secret) < auth.SecretSize {
		return v, fmt.Errorf("value: a secret of %d bytes, want at least %d", len(v.Secret), auth.SecretSize)
	}
	return v, nil
}
