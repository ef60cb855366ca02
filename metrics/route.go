package metrics

import "strings"

// Routes: the values of the route label, which Route maps request paths to.
const (
	RouteInfo    = "info"    // /{module}/@v/{version}.info
	RouteMod     = "mod"     // /{module}/@v/{version}.mod
	RouteZip     = "zip"     // /{module}/@v/{version}.zip
	RouteList    = "list"    // /{module}/@v/list
	RouteLatest  = "latest"  // /{module}/@latest
	RouteSumDB   = "sumdb"   // /sumdb/...
	RouteAPI     = "api"     // /api/... (publishing included)
	RouteAdmin   = "admin"   // /admin...
	RouteAssets  = "assets"  // /assets/...
	RouteHealth  = "health"  // /healthz, /readyz
	RouteMetrics = "metrics" // /metrics
	RouteOther   = "other"   // anything else: the home page, unknown paths
)

// routes are the route label values in index order; RouteOther is last.
var routes = []string{
	RouteInfo, RouteMod, RouteZip, RouteList, RouteLatest, RouteSumDB,
	RouteAPI, RouteAdmin, RouteAssets, RouteHealth, RouteMetrics, RouteOther,
}

// numRoutes is len(routes).
const numRoutes = 12

// Route maps a request path (the URL's path, without query) to one of a
// small fixed set of route names, for the route label: the download
// protocol's info, mod, zip, list and latest; sumdb, api, admin, assets,
// health and metrics; other for everything else. The path itself is never a
// label value, since every module would add series. Route does not
// allocate.
func Route(path string) string {
	switch {
	case strings.HasPrefix(path, "/api/"):
		return RouteAPI
	case strings.HasPrefix(path, "/sumdb/"):
		return RouteSumDB
	case strings.HasSuffix(path, "/@latest"):
		return RouteLatest
	}
	if i := strings.LastIndex(path, "/@v/"); i >= 0 {
		switch file := path[i+len("/@v/"):]; {
		case file == "list":
			return RouteList
		case strings.HasSuffix(file, ".info"):
			return RouteInfo
		case strings.HasSuffix(file, ".mod"):
			return RouteMod
		case strings.HasSuffix(file, ".zip"):
			return RouteZip
		}
		return RouteOther
	}
	switch {
	case path == "/metrics":
		return RouteMetrics
	case path == "/healthz" || path == "/readyz":
		return RouteHealth
	case strings.HasPrefix(path, "/assets/"):
		return RouteAssets
	case path == "/admin" || strings.HasPrefix(path, "/admin/"):
		return RouteAdmin
	}
	return RouteOther
}

// routeIndex returns the index of route in routes; unknown routes are
// other.
func routeIndex(route string) int {
	switch route {
	case RouteInfo:
		return 0
	case RouteMod:
		return 1
	case RouteZip:
		return 2
	case RouteList:
		return 3
	case RouteLatest:
		return 4
	case RouteSumDB:
		return 5
	case RouteAPI:
		return 6
	case RouteAdmin:
		return 7
	case RouteAssets:
		return 8
	case RouteHealth:
		return 9
	case RouteMetrics:
		return 10
	}
	return numRoutes - 1
}
