package clusterstate

import (
	"context"
	"fmt"
	"time"

	"chat/internal/auth"
	"chat/internal/ban"
	"chat/internal/identity"
	"chat/internal/names"
)

// Room is the room's hub as the shared state sees it.
type Room interface {
	Sharer
	Kicker
}

// Node is one node's part in the room's shared state: the bans it mirrors,
// its presence share, and (after Names) the held names it mirrors. Stop
// ends them.
type Node struct {
	// Bans is the room's ban list, for the node's handlers.
	Bans     *Bans
	cfg      Config
	secrets  *Secrets
	presence *Presence
	names    *Names
}

// Join opens the room's shared state for this node within ctx: it signs
// gate's sessions (if it has any) with the room's session secret (Session:
// replaced, with a warning, when the keys changed), loads the bans, and
// starts sharing room's presence.
func Join(ctx context.Context, cfg Config, room Room, gate *auth.Gate) (*Node, error) {
	secrets, err := OpenSecrets(ctx, cfg)
	if err != nil {
		return nil, err
	}
	secret, rotated, err := secrets.Session(ctx, gate.Keys)
	if err != nil {
		return nil, err
	}
	if rotated {
		cfg.logger().Warn("the keys changed since the room's secret was made: every session has ended")
	}
	if gate.Sessions != nil {
		if gate.Sessions, err = auth.NewSessions(secret, gate.Keys, gate.Sessions.Lifetime()); err != nil {
			return nil, err
		}
	}
	bans, err := OpenBans(ctx, cfg, room)
	if err != nil {
		return nil, err
	}
	p, err := SharePresence(ctx, cfg, room)
	if err != nil {
		bans.Stop()
		return nil, err
	}
	cfg.logger().Info("room state shared in NATS", "node", p.Node(), "bans", len(bans.All(time.Now())))
	return &Node{Bans: bans, cfg: cfg, secrets: secrets, presence: p}, nil
}

// Names returns the identity issuer and the table of held names of the
// room, within ctx: identities signed with the room's identity secret
// (Secrets.Identity; or the secret in secretFile, made if missing, when
// one is given), and a table with opts shared by every node (OpenNames).
func (n *Node) Names(ctx context.Context, opts names.Options, secretFile string) (*identity.Issuer, *names.Table, error) {
	var secret []byte
	var err error
	if secretFile != "" {
		secret, err = auth.LoadSecret(secretFile)
	} else {
		secret, err = n.secrets.Identity(ctx)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("identity secret: %w", err)
	}
	issuer, err := identity.New(secret)
	if err != nil {
		return nil, nil, err
	}
	table := names.New(opts)
	if n.names, err = OpenNames(ctx, n.cfg, table); err != nil {
		return nil, nil, err
	}
	return issuer, table, nil
}

// Stop stops sharing this node's presence (its people leave the other
// nodes' rosters) and mirroring the bans and the held names.
func (n *Node) Stop() {
	n.presence.Stop()
	n.Bans.Stop()
	if n.names != nil {
		n.names.Stop()
	}
}

// Banned returns the ban that covers the rate-limit key at now, and
// whether there is one (the mirror's ban.List.Banned).
func (b *Bans) Banned(key string, now time.Time) (ban.Ban, bool) { return b.list.Banned(key, now) }
