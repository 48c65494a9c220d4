# csrdesk: `make run` starts the help desk on its embedded defaults, `make test` runs the tests.
# Both install redis-server with apt-get when it is missing (as root), or say the exact command to run.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

REDIS_PORT ?= 6391
VAR        := $(CURDIR)/var
BIN        := $(CURDIR)/bin/csrdesk

.PHONY: run test bench faults lint build redis-server chromium clean words model

build:
	go build -o $(BIN) ./cmd/csrdesk

# redis-server: install it when missing and we are root; otherwise stop with the command to run. redis-cli (Debian's
# redis-tools, a dependency of redis-server) creates the tests' local Redis Cluster.
redis-server:
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing redis-server and redis-tools with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null; \
	  else \
	    echo "redis-server or redis-cli is missing; install them with:  sudo apt-get install -y redis-server redis-tools" >&2; exit 1; \
	  fi; \
	fi

# chromium: the browser the end-to-end test drives; installed like redis-server.
chromium:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing chromium with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing (the end-to-end test drives it); install it with:  sudo apt-get install -y chromium" >&2; exit 1; \
	  fi; \
	fi

# run: a project-local Redis (port $(REDIS_PORT), data in var/redis, AOF on) unless CSRDESK_REDIS_URL points
# elsewhere, a staff token and session secret kept in var/ unless set, then csrdesk serve. Ctrl-C stops both.
run: redis-server build
	@if [ -z "$${CSRDESK_REDIS_URL:-}" ]; then \
	  mkdir -p $(VAR)/redis; \
	  if ! redis-cli -p $(REDIS_PORT) ping >/dev/null 2>&1; then \
	    redis-server --port $(REDIS_PORT) --bind 127.0.0.1 --dir $(VAR)/redis --appendonly yes \
	      --appendfsync everysec --maxmemory-policy noeviction --daemonize yes \
	      --pidfile $(VAR)/redis/redis.pid --logfile $(VAR)/redis/redis.log; \
	    for i in $$(seq 50); do redis-cli -p $(REDIS_PORT) ping >/dev/null 2>&1 && break; sleep 0.1; done; \
	    trap 'redis-cli -p $(REDIS_PORT) shutdown >/dev/null 2>&1 || true' EXIT; \
	  fi; \
	  export CSRDESK_REDIS_URL=redis://127.0.0.1:$(REDIS_PORT)/0; \
	fi; \
	if [ -z "$${CSRDESK_STAFF_TOKEN:-}$${CSRDESK_STAFF_USERS:-}" ]; then \
	  mkdir -p $(VAR); \
	  [ -s $(VAR)/staff-token ] || head -c 18 /dev/urandom | base64 | tr -d '/+=' > $(VAR)/staff-token; \
	  export CSRDESK_STAFF_TOKEN=$$(cat $(VAR)/staff-token); \
	  echo "staff inbox: http://127.0.0.1:8080/staff (any name; the token is in var/staff-token)"; \
	fi; \
	[ -s $(VAR)/secret ] || head -c 32 /dev/urandom | base64 > $(VAR)/secret; \
	export CSRDESK_SECRET="$${CSRDESK_SECRET:-$$(cat $(VAR)/secret)}"; \
	$(BIN) serve

test: redis-server chromium
	go test -race -count=1 ./...

# words: rebuild faq/words/LANG.txt.gz, the real words typo correction leaves alone, from Debian's word lists and
# hunspell dictionaries (faq/words/README.md).
WORD_PACKAGES := wbritish-large wngerman witalian wfrench wspanish hunspell-en-us hunspell-de-de hunspell-it hunspell-fr hunspell-es
words:
	@if [ "$$(id -u)" = 0 ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(WORD_PACKAGES) >/dev/null; \
	elif ! dpkg -s $(WORD_PACKAGES) >/dev/null 2>&1; then \
	  echo "the word lists need:  sudo apt-get install -y $(WORD_PACKAGES)" >&2; exit 1; \
	fi
	go test ./faq -run '^TestWordList$$' -words -v

# model: retrain the matcher's confidence model on the labelled questions of faq/testdata (not the frozen
# blind-holdout.tsv) and rewrite faq/model.go; TestConfidenceModel fails until this is run after a change of the
# knowledge base or the matcher.
model:
	go test ./faq -run '^TestConfidenceModel$$' -model -v

# bench: knowledge base load-and-index time and memory, per-query latency (p50, p99) and throughput on one core;
# web chat question-to-answer latency with 200 chats open at once; Telegram messages answered per second;
# campaign sending next to a bare go-mail loop, the queue next to raw XREADGROUP/XACK, worker and Redis memory.
bench: redis-server
	go test -run '^$$' -bench . -benchmem -cpu 1 ./faq/
	go test -run '^$$' -bench WebChat -benchtime 2000x ./bot/web/
	go test -run '^$$' -bench Telegram -benchtime 600x ./bot/telegram/
	go test -run '^$$' -bench 'Send|Queue|WorkerMemory' -benchtime 1x -timeout 30m ./campaigns/

# faults: the fault suite (cmd/csrdesk/faults_test.go). Real csrdesk processes, redis-server with AOF, an SMTP
# sink and fake Telegram and Slack servers; workers killed, Redis restarted, the mail server and the chat
# platforms failing, every fuzz target run for FUZZTIME, and a scale-out run. It ends with a table: fault,
# affected, lost, duplicated, recovery. About 7 minutes with the default FUZZTIME.
FUZZTIME ?= 10s
faults: redis-server
	FUZZTIME=$(FUZZTIME) go test -tags faults -count=1 -run '^TestFaults$$' -timeout 60m -v ./cmd/csrdesk/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./... && go vet -tags faults ./cmd/csrdesk/
	go tool staticcheck ./... && go tool staticcheck -tags faults ./cmd/csrdesk/

clean:
	rm -rf bin
