package models_test

import (
	"io/fs"

	"agora/migrations"
)

func migrationsFS() fs.FS { return migrations.FS }
