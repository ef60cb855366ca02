package modproxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"agora/auth"
	"agora/modproxy"
)

func TestAuditNeedsAdmin(t *testing.T) {
	r := newTestRegistry(t)
	r.publish(t, alice, "example.com/m", "v1.0.0", moduleZip(t, "example.com/m", "v1.0.0", "x"))
	for _, who := range []auth.Principal{nobody, reader, alice} {
		if page, err := r.Audit(context.Background(), who, modproxy.AuditQuery{}); !errors.Is(err, modproxy.ErrForbidden) || len(page.Items) != 0 {
			t.Errorf("Audit as %q = %+v, %v; want ErrForbidden and nothing", who.User, page, err)
		}
	}
}

// auditedRegistry returns a registry whose log holds, an hour apart from
// t0: alice's publish of v1.0.0, bob's of v1.1.0, bob's conflicting upload
// of v1.0.0, alice's delete of v1.0.0 and root's block of v1.1.0.
func auditedRegistry(t *testing.T) *testRegistry {
	t.Helper()
	ctx := context.Background()
	r := newTestRegistry(t)
	const path = "example.com/m"
	r.publish(t, alice, path, "v1.0.0", moduleZip(t, path, "v1.0.0", "a"))
	r.clock.Advance(time.Hour)
	r.publish(t, bob, path, "v1.1.0", moduleZip(t, path, "v1.1.0", "b"))
	r.clock.Advance(time.Hour)
	var cerr *modproxy.ConflictError
	if _, err := r.Publish(ctx, bob, path, "v1.0.0", bytes.NewReader(moduleZip(t, path, "v1.0.0", "other"))); !errors.As(err, &cerr) {
		t.Fatalf("conflicting upload: %v", err)
	}
	r.clock.Advance(time.Hour)
	if err := r.Delete(ctx, alice, path, "v1.0.0", modproxy.DeleteOptions{Reason: "bad"}); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(time.Hour)
	if err := r.Delete(ctx, admin, path, "v1.1.0", modproxy.DeleteOptions{Reason: "worse", Block: true}); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAudit(t *testing.T) {
	r := auditedRegistry(t)
	tests := []struct {
		name string
		q    modproxy.AuditQuery
		want []string // "action actor version at-hour", newest first
	}{
		{"all", modproxy.AuditQuery{}, []string{
			"block root v1.1.0 4", "delete alice v1.0.0 3", "publish.rejected bob v1.0.0 2", "publish bob v1.1.0 1", "publish alice v1.0.0 0",
		}},
		{"by actor", modproxy.AuditQuery{Actor: "bob"}, []string{"publish.rejected bob v1.0.0 2", "publish bob v1.1.0 1"}},
		{"by action", modproxy.AuditQuery{Action: modproxy.ActionPublish}, []string{"publish bob v1.1.0 1", "publish alice v1.0.0 0"}},
		{"by path", modproxy.AuditQuery{Path: "example.com/m"}, []string{
			"block root v1.1.0 4", "delete alice v1.0.0 3", "publish.rejected bob v1.0.0 2", "publish bob v1.1.0 1", "publish alice v1.0.0 0",
		}},
		{"by other path", modproxy.AuditQuery{Path: "example.com/m/v2"}, nil},
		{"since is inclusive", modproxy.AuditQuery{Since: t0.Add(3 * time.Hour)}, []string{"block root v1.1.0 4", "delete alice v1.0.0 3"}},
		{"until is exclusive", modproxy.AuditQuery{Until: t0.Add(time.Hour)}, []string{"publish alice v1.0.0 0"}},
		{"between", modproxy.AuditQuery{Since: t0.Add(time.Hour), Until: t0.Add(3 * time.Hour)}, []string{"publish.rejected bob v1.0.0 2", "publish bob v1.1.0 1"}},
		{"combined", modproxy.AuditQuery{Actor: "alice", Action: modproxy.ActionDelete}, []string{"delete alice v1.0.0 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := r.Audit(context.Background(), admin, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range page.Items {
				got = append(got, fmt.Sprintf("%s %s %s %d", e.Action, e.Actor, e.Version, int(e.At.Sub(t0).Hours())))
			}
			if !slices.Equal(got, tt.want) || page.Next != "" {
				t.Errorf("Audit = %q, next %q; want %q and no next page", got, page.Next, tt.want)
			}
		})
	}
}

func TestAuditPages(t *testing.T) {
	ctx := context.Background()
	r := auditedRegistry(t)
	var ids []int64
	q := modproxy.AuditQuery{Limit: 2}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		page, err := r.Audit(ctx, admin, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) > 2 {
			t.Fatalf("page of %d events; want at most 2", len(page.Items))
		}
		for _, e := range page.Items {
			ids = append(ids, e.ID)
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	if want := []int64{5, 4, 3, 2, 1}; !slices.Equal(ids, want) {
		t.Errorf("paged IDs = %v; want %v", ids, want)
	}

	bad := []modproxy.AuditQuery{
		{Limit: -1},
		{Limit: modproxy.MaxPageSize + 1},
		{Cursor: "not-a-cursor"},
		{Since: t0, Until: t0},
		{Since: t0.Add(time.Hour), Until: t0},
	}
	for _, q := range bad {
		if _, err := r.Audit(ctx, admin, q); !errors.Is(err, modproxy.ErrInvalid) {
			t.Errorf("Audit(%+v) = %v; want ErrInvalid", q, err)
		}
	}
}

func TestModules(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	// Paths that share prefixes, in publish order.
	publishAll(t, r, "example.com/a/b", "v1.0.0", "v1.1.0-rc.1")
	r.clock.Advance(time.Hour)
	publishAll(t, r, "example.com/a/b-c", pseudoOld)
	publishAll(t, r, "example.com/a/b/v2", "v2.0.0")
	publishAll(t, r, "example.com/z", "v0.1.0")
	r.clock.Advance(time.Hour)
	publishAll(t, r, "example.com/a/b", "v1.2.0")
	if err := r.Delete(ctx, alice, "example.com/z", "v0.1.0", modproxy.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	page, err := r.Modules(ctx, reader, modproxy.ModuleQuery{})
	if err != nil {
		t.Fatal(err)
	}
	want := []modproxy.ModuleSummary{
		{Path: "example.com/a/b", Latest: "v1.2.0", Versions: 3, UpdatedAt: t0.Add(2 * time.Hour)},
		{Path: "example.com/a/b-c", Latest: pseudoOld, Versions: 1, UpdatedAt: t0.Add(time.Hour)},
		{Path: "example.com/a/b/v2", Latest: "v2.0.0", Versions: 1, UpdatedAt: t0.Add(time.Hour)},
		{Path: "example.com/z", Latest: "", Versions: 0, UpdatedAt: t0.Add(time.Hour)},
	}
	if !slices.Equal(page.Items, want) || page.Next != "" {
		t.Errorf("Modules =\n%+v, next %q\nwant\n%+v", page.Items, page.Next, want)
	}

	prefixes := []struct {
		prefix string
		want   []string
	}{
		{"example.com/a/b", []string{"example.com/a/b", "example.com/a/b-c", "example.com/a/b/v2"}},
		{"example.com/a/b/", []string{"example.com/a/b/v2"}},
		{"example.com/a/b-", []string{"example.com/a/b-c"}},
		{"example.com/A", nil},
		{"example.org", nil},
	}
	for _, tt := range prefixes {
		page, err := r.Modules(ctx, reader, modproxy.ModuleQuery{Prefix: tt.prefix})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range page.Items {
			got = append(got, m.Path)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Modules(prefix %q) = %q; want %q", tt.prefix, got, tt.want)
		}
	}

	var paged []string
	q := modproxy.ModuleQuery{Limit: 3}
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("paging does not end")
		}
		page, err := r.Modules(ctx, reader, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page.Items {
			paged = append(paged, m.Path)
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	if want := []string{"example.com/a/b", "example.com/a/b-c", "example.com/a/b/v2", "example.com/z"}; !slices.Equal(paged, want) {
		t.Errorf("paged Modules = %q; want %q", paged, want)
	}

	if _, err := r.Modules(ctx, nobody, modproxy.ModuleQuery{}); !errors.Is(err, modproxy.ErrForbidden) {
		t.Errorf("Modules as anonymous = %v; want ErrForbidden", err)
	}
	for _, q := range []modproxy.ModuleQuery{{Limit: -1}, {Limit: modproxy.MaxPageSize + 1}, {Cursor: "example.com/a/b"}} {
		if _, err := r.Modules(ctx, reader, q); !errors.Is(err, modproxy.ErrInvalid) {
			t.Errorf("Modules(%+v) = %v; want ErrInvalid", q, err)
		}
	}
}

func TestModuleRecords(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	publishAll(t, r, "example.com/m", "v1.10.0", "v1.2.0", pseudoOld)
	if err := r.Delete(ctx, alice, "example.com/m", "v1.2.0", modproxy.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	all, err := r.Module(ctx, reader, "example.com/m")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range all {
		got = append(got, fmt.Sprintf("%s live=%v", v.Version, v.Live()))
	}
	want := []string{pseudoOld + " live=true", "v1.2.0 live=false", "v1.10.0 live=true"}
	if !slices.Equal(got, want) {
		t.Errorf("Module = %q; want %q", got, want)
	}
	if _, err := r.Module(ctx, nobody, "example.com/m"); !errors.Is(err, modproxy.ErrForbidden) {
		t.Errorf("Module as anonymous = %v; want ErrForbidden", err)
	}
	if _, err := r.Module(ctx, reader, "example.com/none"); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("Module(unknown) = %v; want ErrNotFound", err)
	}
}
