# Everyday commands. The README's two set-up commands (go run ., go test ./...)
# need only Go; these add the dev loop, linters and the race detector.

.PHONY: run test race lint dev build bench bench-cache ci

run:            ## run Agora on the embedded defaults (SQLite and storage in ./data)
	go run .

test:           ## the whole test suite (PostgreSQL tests need a server; see README)
	go test ./...

race:           ## the packages with concurrency, under the race detector (needs cgo)
	go test -race ./storage/... ./modproxy/... ./auth/... ./models/... ./actions/... \
		./upstream/... ./checksum/... ./metrics/... ./command/... ./cork/... ./bench/cmd/...

lint:           ## gofmt, go vet and staticcheck must be silent
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...
	go tool staticcheck ./...

dev:            ## rebuild and restart on every save, like `buffalo dev`
	GO_ENV=development go tool refresh run -c .buffalo.dev.yml

build:          ## the agora binary in bin/: static (no cgo), as it should be deployed
	CGO_ENABLED=0 go build -o bin/agora .

bench:          ## serving benchmark against nginx (installs nginx and wrk)
	bench/serve.sh

bench-cache:    ## pull-through cache benchmark: cold fill, warm replay, lists (go mod download all first)
	bench/replay.sh

ci:             ## what CI runs on a clean clone
	bash .ci/run
