package config

import (
	"net/netip"
	"strings"
)

// This file holds the private-network policy of delivery URLs: the
// addresses deliveries refuse unless delivery.allow_private_networks is
// set or delivery.allow_cidrs lists them. `walhook check` applies it to
// delivery URLs whose host is an address; the delivery client applies it
// to every address it dials, after name resolution.

// refusedRange is a range of addresses deliveries refuse by default.
type refusedRange struct {
	prefix netip.Prefix
	kind   string // what the range is, e.g. "loopback"
}

func ranges(kind string, prefixes ...string) []refusedRange {
	out := make([]refusedRange, len(prefixes))
	for i, p := range prefixes {
		out[i] = refusedRange{netip.MustParsePrefix(p), kind}
	}
	return out
}

// nat64 is the well-known NAT64 prefix (RFC 6052): its addresses stand for
// the IPv4 address in their last 32 bits, and are judged by that address
// (unless allow lists the NAT64 address itself).
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// refusedRanges are the special-purpose ranges (IANA's registries) that
// are not globally reachable, those whose addresses stand for another
// IPv4 address a gateway would reach for us, and multicast. The first
// match names the range.
var refusedRanges = concat(
	// IPv4.
	ranges("broadcast", "255.255.255.255/32"),
	ranges("unspecified", "0.0.0.0/32", "::/128"),
	ranges("\"this network\"", "0.0.0.0/8"),
	ranges("loopback", "127.0.0.0/8"),
	ranges("private", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
	ranges("private (shared, carrier-grade NAT)", "100.64.0.0/10"),
	ranges("link-local", "169.254.0.0/16"),
	ranges("IETF protocol assignment", "192.0.0.0/24"),
	ranges("documentation", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20"),
	ranges("6to4 relay", "192.88.99.0/24"),
	ranges("benchmarking", "198.18.0.0/15", "2001:2::/48"),
	ranges("link-local multicast", "224.0.0.0/24", "ff02::/16"),
	ranges("multicast", "224.0.0.0/4", "ff00::/8"),
	ranges("reserved", "240.0.0.0/4"),
	// IPv6.
	ranges("loopback", "::1/128"),
	ranges("IPv4-compatible", "::/96"),
	ranges("IPv4-translated", "::ffff:0:0:0/96"),
	ranges("local-use NAT64", "64:ff9b:1::/48"),
	ranges("discard-only", "100::/64"),
	ranges("Teredo", "2001::/32"),
	ranges("6to4", "2002::/16"),
	ranges("private (unique local)", "fc00::/7"),
	ranges("link-local", "fe80::/10"),
	ranges("site-local", "fec0::/10"),
)

func concat(lists ...[]refusedRange) []refusedRange {
	var out []refusedRange
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// RefusedAddress returns why deliveries may not reach ip, or "" when they
// may. Every address is allowed when allowPrivate is set; otherwise an
// address inside one of allow is, and an address in a refused range (see
// the README's security notes) is not. An IPv4-mapped IPv6 address is
// judged as its IPv4 address, and a NAT64 address (64:ff9b::/96) as the
// IPv4 address it embeds. The reason reads "a loopback address
// (127.0.0.0/8)".
func RefusedAddress(ip netip.Addr, allowPrivate bool, allow []netip.Prefix) string {
	if allowPrivate {
		return ""
	}
	ip = ip.WithZone("").Unmap()
	for _, p := range allow {
		if p.Contains(ip) {
			return ""
		}
	}
	if !ip.IsValid() {
		return "not an address"
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		v4 := netip.AddrFrom4([4]byte(b[12:]))
		// allow speaks of the addresses dialed: listing 10.0.0.0/8 does not
		// let the NAT64 gateway reach 10.0.0.0/8 for us.
		if reason := RefusedAddress(v4, false, nil); reason != "" {
			return "a NAT64 form of " + reason
		}
		return ""
	}
	for _, r := range refusedRanges {
		if r.prefix.Contains(ip) {
			return article(r.kind) + " " + r.kind + " address (" + r.prefix.String() + ")"
		}
	}
	return ""
}

// article returns "a" or "an" for word.
func article(word string) string {
	if word != "" && strings.ContainsRune("aeiouAEIOU", rune(word[0])) {
		return "an"
	}
	return "a"
}

// refusedHost returns why deliveries may not reach host, a URL's host,
// when it is an IP address in a refused range; "" for any other host. A
// name is only judged when a delivery dials it, by the address it
// resolves to then.
func refusedHost(host string, allowPrivate bool, allow []netip.Prefix) string {
	if ip, err := netip.ParseAddr(host); err == nil {
		return RefusedAddress(ip, allowPrivate, allow)
	}
	return ""
}
