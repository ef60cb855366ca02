package actions

import (
	"net/http"

	"github.com/gobuffalo/buffalo"
	"github.com/gobuffalo/buffalo/render"

	"agora/assets"
	"agora/templates"
)

// r is the render engine: plush templates and assets, both embedded in the
// binary. The embedded copies are used even when a templates/ folder sits in
// the working directory, so what runs is what was built.
var r = render.New(render.Options{
	HTMLLayout:  "application.plush.html",
	TemplatesFS: templates.FS,
	AssetsFS:    assets.FS,
})

// assetsFS serves the embedded assets under /assets.
func assetsFS() http.FileSystem { return http.FS(assets.FS) }

// home renders the landing page: what this server is and how to use it.
func home(c buffalo.Context) error {
	c.Set("host", c.Request().Host)
	return c.Render(http.StatusOK, r.HTML("index.plush.html"))
}
