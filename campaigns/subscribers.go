// Package campaigns is the dissemination mailer: subscribers and lists, campaigns, the send queue on Redis and
// the workers that deliver it over SMTP.
package campaigns

import (
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"csrdesk/faq"
	"csrdesk/internal/rdb"
)

// Subscriber states. Only active subscribers receive campaigns; a subscriber is active once they have confirmed
// their address (double opt-in), or when an import vouches for their consent with --confirmed.
const (
	Unconfirmed  = "unconfirmed"
	Active       = "active"
	Unsubscribed = "unsubscribed"
	Bounced      = "bounced"
	Blocklisted  = "blocklisted"
)

// Subscriber is a person who receives mailings.
type Subscriber struct {
	ID       string            `json:"id"` // 10 random base32 letters and digits: names the subscriber in bounce addresses
	Email    string            `json:"email"`
	Name     string            `json:"name"`
	Company  string            `json:"company"`
	Country  string            `json:"country"`  // ISO 3166 alpha-2, upper case, when given as two letters
	Language string            `json:"language"` // en, de, it, fr, es, or empty
	Role     string            `json:"role"`
	Status   string            `json:"status"`
	Attrs    map[string]string `json:"attrs"` // free attributes from the import's other columns
	Created  time.Time         `json:"created"`
}

// List is a named set of subscribers. A public list is offered on the subscribe form and in the preferences,
// under its title.
type List struct {
	Name    string    `json:"name"`
	Title   string    `json:"title,omitempty"`
	Public  bool      `json:"public,omitempty"`
	Created time.Time `json:"created"`
	Members int64     `json:"members"`
}

// Errors callers turn into messages.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid")
)

// Store keeps subscribers and lists in Redis.
type Store struct {
	rdb redis.UniversalClient
	now func() time.Time
}

// NewStore returns a store on rdb.
func NewStore(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb, now: time.Now} }

// Subscriber and list keys share the hash tag {subs}: an import's script and the others touch several of
// them, which Redis Cluster allows only within one slot.
const (
	listsKey = rdb.SubsPrefix + "lists" // hash: list name -> JSON {created}
	subsKey  = rdb.SubsPrefix + "all"   // sorted set of every subscriber's email, by creation time
)

func subKey(email string) string     { return rdb.SubsPrefix + "subscriber:" + email }
func membersKey(list string) string  { return rdb.SubsPrefix + "list:" + list }     // sorted by time added
func consentKey(email string) string { return rdb.SubsPrefix + "consent:" + email } // list of Consent JSON, oldest first

const (
	idsKey        = rdb.SubsPrefix + "ids"        // hash: subscriber id -> email
	suppressedKey = rdb.SubsPrefix + "suppressed" // set of SuppressionHash of erased addresses
)

// newID returns a subscriber id: 10 characters of lower-case base32 (50 random bits).
func newID() string {
	var b [10]byte
	rand.Read(b[:])
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	for i := range b {
		b[i] = alphabet[b[i]%32]
	}
	return string(b[:])
}

var listName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// CreateList creates an empty list.
func (s *Store) CreateList(ctx context.Context, l List) error {
	if !listName.MatchString(l.Name) {
		return fmt.Errorf("list name %q: %w: use 1-64 lower-case letters, digits, - and _", l.Name, ErrInvalid)
	}
	if len(l.Title) > 200 {
		return fmt.Errorf("list %s: %w: the title is longer than 200 characters", l.Name, ErrInvalid)
	}
	l.Created, l.Members = s.now().UTC(), 0
	data, _ := json.Marshal(l)
	ok, err := s.rdb.HSetNX(ctx, listsKey, l.Name, data).Result()
	if err != nil {
		return fmt.Errorf("create list: %w", err)
	}
	if !ok {
		return fmt.Errorf("list %q: %w", l.Name, ErrExists)
	}
	return nil
}

// Lists returns every list with its number of members, by name.
func (s *Store) Lists(ctx context.Context) ([]List, error) {
	all, err := s.rdb.HGetAll(ctx, listsKey).Result()
	if err != nil {
		return nil, fmt.Errorf("lists: %w", err)
	}
	var out []List
	for name, data := range all {
		var l List
		json.Unmarshal([]byte(data), &l)
		l.Name = name
		if l.Members, err = s.rdb.ZCard(ctx, membersKey(name)).Result(); err != nil {
			return nil, fmt.Errorf("lists: %w", err)
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// PublicLists returns the lists offered to the public.
func (s *Store) PublicLists(ctx context.Context) ([]List, error) {
	all, err := s.Lists(ctx)
	var out []List
	for _, l := range all {
		if l.Public {
			out = append(out, l)
		}
	}
	return out, err
}

func (s *Store) listExists(ctx context.Context, name string) error {
	ok, err := s.rdb.HExists(ctx, listsKey, name).Result()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("list %q: %w (create it with: csrdesk lists create %s)", name, ErrNotFound, name)
	}
	return nil
}

// NormalizeEmail checks an address and returns it in the form csrdesk stores: trimmed, lower case, without a
// display name.
func NormalizeEmail(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", errors.New("no address")
	}
	a, err := mail.ParseAddress(raw)
	if err != nil || a.Name != "" || a.Address != raw {
		return "", fmt.Errorf("%q is not an email address", raw)
	}
	// Checked lower-cased, as stored: lower case can be longer in UTF-8 (Ⱥ is 2 bytes, ⱥ 3).
	addr := strings.ToLower(a.Address)
	domain := addr[strings.LastIndexByte(addr, '@')+1:]
	if len(addr) > 254 || !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return "", fmt.Errorf("%q is not an email address", raw)
	}
	return addr, nil
}

// Subscriber returns the subscriber with this address.
func (s *Store) Subscriber(ctx context.Context, email string) (*Subscriber, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w: %v", ErrInvalid, err)
	}
	v, err := s.rdb.HGetAll(ctx, subKey(email)).Result()
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	if len(v) == 0 {
		return nil, fmt.Errorf("subscriber %s: %w", email, ErrNotFound)
	}
	return fromHash(v), nil
}

func fromHash(v map[string]string) *Subscriber {
	sub := &Subscriber{ID: v["id"], Email: v["email"], Name: v["name"], Company: v["company"], Country: v["country"], Language: v["language"],
		Role: v["role"], Status: v["status"], Attrs: map[string]string{}}
	json.Unmarshal([]byte(v["attrs"]), &sub.Attrs)
	sub.Created, _ = time.Parse(time.RFC3339, v["created"])
	return sub
}

// SetStatus changes a subscriber's status (active, unsubscribed, bounced, blocklisted).
func (s *Store) SetStatus(ctx context.Context, email, status string) error {
	switch status {
	case Unconfirmed, Active, Unsubscribed, Bounced, Blocklisted:
	default:
		return fmt.Errorf("status %q: %w", status, ErrInvalid)
	}
	n, err := s.rdb.Exists(ctx, subKey(email)).Result()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("subscriber %s: %w", email, ErrNotFound)
	}
	return s.rdb.HSet(ctx, subKey(email), "status", status).Err()
}

// ImportReport says what an import did, line by line for what it could not take as given.
type ImportReport struct {
	Added, Updated int
	Unchanged      int      // rows already stored as given, on the list: what a re-run of a finished import reports
	NotImported    int      // rows not imported, every one of them, even when Problems lists only the first ones
	Problems       []string // "line N: ..." for every row not imported (up to ImportOptions.MaxProblems)
	Warnings       []string // "line N: ..." for rows imported with a field left out or kept as written
	Lines          int      // the lines read, the header's included
	StoppedAt      int      `json:",omitempty"` // when the import stopped midway: the first line whose row is not stored
}

// Stored is the number of rows of the file that are stored: added, updated or unchanged.
func (r *ImportReport) Stored() int { return r.Added + r.Updated + r.Unchanged }

// ImportStopped is the error of an import that stopped before the end of its input, because Redis failed or the
// input could not be read on. Every row before Line is stored or reported as a problem; from Line on, nothing is
// known to be stored. Importing the same file again finishes it: rows already stored come out unchanged, and no
// one is added twice or gets a second consent record.
type ImportStopped struct {
	Line   int  // the first line whose row is not stored
	Stored int  // the rows stored before it
	Read   bool // reading the input failed, not Redis
	Err    error
}

func (e *ImportStopped) Error() string {
	return fmt.Sprintf("import stopped at line %d with %d rows stored before it (import the same file again to finish it; rows already stored are not added twice): %v",
		e.Line, e.Stored, e.Err)
}

func (e *ImportStopped) Unwrap() error { return e.Err }

// standard columns of an import; any other column is a free attribute.
var standard = map[string]bool{"email": true, "name": true, "company": true, "country": true, "language": true, "role": true}

// The limits of an imported row's fields. A row with a field over its limit is not imported and is reported on
// its line: a field that long is a broken file (a stray quote, a column shifted), not a person, and a stored one
// would fail every mailing that shows it. Lengths are counted after trimming spaces, in characters (Unicode code
// points) except the address, whose limit RFC 5321 sets in bytes.
const (
	maxEmail      = 254 // RFC 5321: a path is at most 256 bytes, two of them the angle brackets
	maxName       = 200 // name, company and role, each: at 4 bytes a character at worst, a subject showing one stays within the renderer's 1,000 bytes
	maxCountry    = 64  // a two-letter code, or a country's name kept as written
	maxLanguage   = 35  // a language tag (BCP 47 asks implementations to take at least 35 characters)
	maxAttr       = 1000
	maxAttrs      = 16 << 10 // bytes of all of a row's attributes together, as stored (JSON)
	maxColumns    = 64
	maxColumnName = 64
)

// fieldLimits are the limits in characters of the standard columns but email.
var fieldLimits = map[string]int{"name": maxName, "company": maxName, "role": maxName, "country": maxCountry, "language": maxLanguage}

// importBatch is how many rows go to Redis in one script call: small enough that a batch is some 50 KB of
// ordinary rows (under 10 MB with every field at its limit) and takes Redis milliseconds, large enough that round
// trips do not dominate.
const importBatch = 500

// ImportOptions says where an import goes and what it vouches for.
type ImportOptions struct {
	List      string
	Confirmed bool   // the importer vouches that the rows have given consent: they become active at once
	Source    string // the file's name, recorded with each new subscriber's consent
	Progress  func(n int)
	// Stored is told, after every batch written, the rows stored so far and the last line of the batch.
	Stored func(rows, line int)
	// MaxProblems is the most problems and warnings the report lists (0: all); NotImported counts them all. The
	// API sets it so that the answer for a file of garbage stays small.
	MaxProblems int
}

// Import reads subscribers from CSV (a header row naming the columns; email is required) into a list. Every row
// that cannot be imported is reported with its line, and the other rows are imported: a broken quote costs the
// line it is on, not the rest of the file. Rows are stored in batches, each batch atomically, in the order of
// the file; if Redis fails midway the error is an *ImportStopped saying at which line, with the report so far,
// and importing the same file again finishes the job.
//
// New subscribers are unconfirmed (they receive no campaign until they confirm) unless opts.Confirmed; either way
// the import is recorded as their consent's origin. An existing subscriber is updated but keeps its status: an
// unsubscribed or bounced address stays so. An address erased on request is not imported again.
func (s *Store) Import(ctx context.Context, r io.Reader, opts ImportOptions) (*ImportReport, error) {
	list := opts.List
	if err := s.listExists(ctx, list); err != nil {
		return nil, err
	}
	cr := newCSVReader(r, opts.Progress)
	hrec, err := cr.Next()
	var ce *csvError
	switch {
	case err == io.EOF:
		return nil, fmt.Errorf("import: %w: line 1: cannot read the header row: the file is empty", ErrInvalid)
	case errors.As(err, &ce):
		return nil, fmt.Errorf("import: %w: line %d: cannot read the header row: %s", ErrInvalid, ce.line, ce.msg)
	case err != nil:
		return nil, fmt.Errorf("import: line 1: cannot read the header row: %w", err)
	}
	header, hline := hrec.fields, hrec.first
	if len(header) > maxColumns {
		return nil, fmt.Errorf("import: %w: line %d: the header has %d columns; the most is %d", ErrInvalid, hline, len(header), maxColumns)
	}
	cols := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "":
			return nil, fmt.Errorf("import: %w: line %d: column %d has no name", ErrInvalid, hline, i+1)
		case !utf8.ValidString(h):
			return nil, fmt.Errorf("import: %w: line %d: column %d's name is not valid UTF-8 (save the file as UTF-8)", ErrInvalid, hline, i+1)
		case utf8.RuneCountInString(h) > maxColumnName:
			return nil, fmt.Errorf("import: %w: line %d: column %d's name is longer than %d characters", ErrInvalid, hline, i+1, maxColumnName)
		}
		if _, dup := cols[h]; dup {
			return nil, fmt.Errorf("import: %w: line %d: column %q appears twice", ErrInvalid, hline, h)
		}
		cols[h] = i
	}
	if _, ok := cols["email"]; !ok {
		return nil, fmt.Errorf("import: %w: line %d: the header has no email column (columns: %s)", ErrInvalid, hline, strings.Join(header, ","))
	}
	attrCols := attrNames(cols)
	rep := &ImportReport{}
	listed := func() bool { return opts.MaxProblems <= 0 || len(rep.Problems)+len(rep.Warnings) < opts.MaxProblems }
	problem := func(rec csvRecord, format string, args ...any) {
		rep.NotImported++
		if !listed() {
			return
		}
		msg := fmt.Sprintf("line %d: ", rec.first) + fmt.Sprintf(format, args...)
		if rec.last > rec.first { // say which lines the row took, so that none is left unaccounted for
			msg += fmt.Sprintf(" (the row spans lines %d-%d)", rec.first, rec.last)
		}
		rep.Problems = append(rep.Problems, msg)
	}
	warn := func(line int, format string, args ...any) {
		if listed() {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("line %d: ", line)+fmt.Sprintf(format, args...))
		}
	}
	seen := map[string]int{} // email -> line
	var batch []*Subscriber
	var lines []int
	consent := Consent{Action: "imported", Via: "import", Source: opts.Source, Lists: []string{list}}
	if opts.Confirmed {
		consent.Action, consent.Text = "confirmed", "marked as having consented by the importer (import --confirmed)"
	}
	// next is the first line whose row is not stored yet: where a failure stops the import.
	next := func() int {
		if len(lines) > 0 {
			return lines[0]
		}
		return cr.read + 1
	}
	stopped := func(err error) *ImportStopped {
		rep.StoppedAt = next()
		return &ImportStopped{Line: rep.StoppedAt, Stored: rep.Stored(), Err: err}
	}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		hashes := make([]any, len(batch))
		for i, sub := range batch {
			hashes[i] = SuppressionHash(sub.Email)
		}
		erased, err := s.rdb.SMIsMember(ctx, suppressedKey, hashes...).Result()
		if err != nil {
			return stopped(fmt.Errorf("check lines %d-%d against erased addresses: %w", lines[0], lines[len(lines)-1], err))
		}
		var keep []*Subscriber
		for i, sub := range batch {
			if erased[i] {
				problem(csvRecord{first: lines[i], last: lines[i]}, "%s asked to be erased; it can only come back by subscribing again itself", sub.Email)
				continue
			}
			keep = append(keep, sub)
		}
		res, err := s.save(ctx, list, keep, opts.Confirmed, consent)
		if err != nil {
			return stopped(fmt.Errorf("save lines %d-%d: %w", lines[0], lines[len(lines)-1], err))
		}
		rep.Added += res.added
		rep.Updated += res.updated
		rep.Unchanged += res.unchanged
		if opts.Stored != nil {
			opts.Stored(rep.Stored(), lines[len(lines)-1])
		}
		batch, lines = batch[:0], lines[:0]
		return nil
	}
	for {
		rec, err := cr.Next()
		rep.Lines = cr.read
		if err == io.EOF {
			break
		}
		if errors.As(err, &ce) {
			problem(csvRecord{first: ce.line, last: ce.line}, "%s", ce.msg)
			continue
		}
		if err != nil {
			stop := stopped(fmt.Errorf("read line %d: %w", cr.read+1, err))
			stop.Read = true
			return rep, stop
		}
		if len(rec.fields) == 1 && strings.TrimSpace(rec.fields[0]) == "" {
			continue // a blank line
		}
		// Every field, not the record's first line only: a quoted field may run over several lines.
		if slices.ContainsFunc(rec.fields, func(f string) bool { return !utf8.ValidString(f) }) {
			problem(rec, "not valid UTF-8 (save the file as UTF-8)")
			continue
		}
		if len(rec.fields) != len(header) {
			problem(rec, "%d fields, the header has %d", len(rec.fields), len(header))
			continue
		}
		field := func(name string) string {
			if i, ok := cols[name]; ok {
				return strings.TrimSpace(rec.fields[i])
			}
			return ""
		}
		if msg := overLimit(rec.fields, cols, attrCols); msg != "" {
			problem(rec, "%s", msg)
			continue
		}
		email, err := NormalizeEmail(field("email"))
		if err != nil {
			problem(rec, "%v", err)
			continue
		}
		if first, dup := seen[email]; dup {
			problem(rec, "%s already on line %d", email, first)
			continue
		}
		sub := &Subscriber{Email: email, Name: field("name"), Company: field("company"), Role: field("role"), Attrs: map[string]string{}}
		for _, name := range attrCols {
			if v := strings.TrimSpace(rec.fields[cols[name]]); v != "" {
				sub.Attrs[name] = v
			}
		}
		if attrs, _ := json.Marshal(sub.Attrs); len(attrs) > maxAttrs {
			problem(rec, "the attributes (columns %s) take %d bytes together; the most is %d", strings.Join(attrCols, ", "), len(attrs), maxAttrs)
			continue
		}
		seen[email] = rec.first
		if c := field("country"); len(c) == 2 {
			sub.Country = strings.ToUpper(c)
		} else if c != "" {
			sub.Country = c
			warn(rec.first, "country %q is not a two-letter code; kept as written", c)
		}
		if l := field("language"); l != "" {
			if lang, ok := faq.ParseLang(l); ok {
				sub.Language = string(lang)
			} else {
				warn(rec.first, "language %q is not one of en, de, it, fr, es; left empty (mails go out in English)", l)
			}
		}
		batch, lines = append(batch, sub), append(lines, rec.first)
		if len(batch) == importBatch {
			if err := flush(); err != nil {
				return rep, err
			}
		}
	}
	return rep, flush()
}

// overLimit says which field of a row is longer than its limit, or "".
func overLimit(rec []string, cols map[string]int, attrCols []string) string {
	if n := len(strings.TrimSpace(rec[cols["email"]])); n > maxEmail {
		return fmt.Sprintf("email is %d bytes long; an address has at most %d (RFC 5321)", n, maxEmail)
	}
	for _, name := range []string{"name", "company", "role", "country", "language"} {
		if i, ok := cols[name]; ok {
			if n := utf8.RuneCountInString(strings.TrimSpace(rec[i])); n > fieldLimits[name] {
				return fmt.Sprintf("%s is %d characters long; the most is %d", name, n, fieldLimits[name])
			}
		}
	}
	for _, name := range attrCols {
		if n := utf8.RuneCountInString(strings.TrimSpace(rec[cols[name]])); n > maxAttr {
			return fmt.Sprintf("%s is %d characters long; the most for an attribute is %d", name, n, maxAttr)
		}
	}
	return ""
}

// attrNames returns the import's attribute columns in the file's order.
func attrNames(cols map[string]int) []string {
	var names []string
	for name := range cols {
		if !standard[name] {
			names = append(names, name)
		}
	}
	sort.Slice(names, func(i, j int) bool { return cols[names[i]] < cols[names[j]] })
	return names
}

// saveScript upserts a batch of subscribers and adds them to a list, keeping an existing subscriber's status, id
// and creation time (one stored before subscribers had ids gets one). KEYS are the set of all subscribers, the
// list's members and the ids, then for each row its hash and consent list; ARGV the creation time (RFC 3339 and
// Unix milliseconds), a new subscriber's status, the consent record and whether the import vouches for consent
// (an unconfirmed subscriber then becomes active), then 8 values a row: email, name, company, country, language,
// role, attrs and a new id. It returns a code a row: 1 new, 2 stored as given and on the list already (a re-run of
// an import that stopped midway), 0 changed.
//
// One script a batch, not a transaction of one script a row: it is as atomic (Redis refuses a script over
// maxmemory before its first write, and runs one that has written to its end), and it sends the script's text
// once, not 500 times, which made imports several times slower.
var saveScript = redis.NewScript(`
local created, score, status, record, vouch = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local out = {}
local n = (#ARGV - 5) / 8
for r = 0, n - 1 do
  local a, sub, consent = 5 + 8 * r, KEYS[4 + 2 * r], KEYS[5 + 2 * r]
  local email, id = ARGV[a + 1], ARGV[a + 8]
  local new = redis.call('EXISTS', sub) == 0
  local changed = new
  if not new then
    local cur = redis.call('HMGET', sub, 'name', 'company', 'country', 'language', 'role', 'attrs')
    for i = 1, 6 do
      if cur[i] ~= ARGV[a + 1 + i] then changed = true end
    end
  end
  if new then
    redis.call('HSET', sub, 'email', email, 'name', ARGV[a + 2], 'company', ARGV[a + 3], 'country', ARGV[a + 4],
      'language', ARGV[a + 5], 'role', ARGV[a + 6], 'attrs', ARGV[a + 7], 'status', status, 'created', created, 'id', id)
    redis.call('HSET', KEYS[3], id, email)
    redis.call('ZADD', KEYS[1], score, email)
    redis.call('RPUSH', consent, record)
  else
    if changed then
      redis.call('HSET', sub, 'email', email, 'name', ARGV[a + 2], 'company', ARGV[a + 3], 'country', ARGV[a + 4],
        'language', ARGV[a + 5], 'role', ARGV[a + 6], 'attrs', ARGV[a + 7])
    end
    if vouch == '1' and redis.call('HGET', sub, 'status') == 'unconfirmed' then
      redis.call('HSET', sub, 'status', 'active')
      redis.call('RPUSH', consent, record)
      changed = true
    end
    if redis.call('HSETNX', sub, 'id', id) == 1 then -- stored before subscribers had ids
      redis.call('HSET', KEYS[3], id, email)
      changed = true
    end
  end
  if redis.call('ZADD', KEYS[2], 'NX', score, email) == 1 then changed = true end
  if new then out[r + 1] = 1 elseif changed then out[r + 1] = 0 else out[r + 1] = 2 end
end
return out`)

// saved counts what save did with a batch.
type saved struct{ added, updated, unchanged int }

// save writes a batch in one script: all of it or none.
func (s *Store) save(ctx context.Context, list string, batch []*Subscriber, confirmed bool, consent Consent) (saved, error) {
	var res saved
	if len(batch) == 0 {
		return res, nil
	}
	now := s.now().UTC()
	consent.At = now
	record, _ := json.Marshal(consent)
	status, vouch := Unconfirmed, "0"
	if confirmed {
		status, vouch = Active, "1"
	}
	keys := make([]string, 0, 3+2*len(batch))
	keys = append(keys, subsKey, membersKey(list), idsKey)
	args := make([]any, 0, 5+8*len(batch))
	args = append(args, now.Format(time.RFC3339), now.UnixMilli(), status, string(record), vouch)
	for _, sub := range batch {
		attrs, _ := json.Marshal(sub.Attrs)
		keys = append(keys, subKey(sub.Email), consentKey(sub.Email))
		args = append(args, sub.Email, sub.Name, sub.Company, sub.Country, sub.Language, sub.Role, string(attrs), newID())
	}
	codes, err := saveScript.Run(ctx, s.rdb, keys, args...).Int64Slice()
	if err != nil {
		return saved{}, fmt.Errorf("save script: %w", err)
	}
	for _, c := range codes {
		switch c {
		case 1:
			res.added++
		case 2:
			res.unchanged++
		default:
			res.updated++
		}
	}
	return res, nil
}

// Members calls fn for every member of list, in the order they joined, a page at a time.
func (s *Store) Members(ctx context.Context, list string, fn func(*Subscriber) error) error {
	if err := s.listExists(ctx, list); err != nil {
		return err
	}
	const page = 500
	for start := int64(0); ; start += page {
		emails, err := s.rdb.ZRange(ctx, membersKey(list), start, start+page-1).Result()
		if err != nil {
			return err
		}
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(emails))
		for i, e := range emails {
			cmds[i] = pipe.HGetAll(ctx, subKey(e))
		}
		if len(emails) > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
		}
		for _, c := range cmds {
			if v := c.Val(); len(v) > 0 {
				if err := fn(fromHash(v)); err != nil {
					return err
				}
			}
		}
		if len(emails) < page {
			return nil
		}
	}
}

// Export writes a list's members as CSV: the standard columns, status, then every attribute any member has.
func (s *Store) Export(ctx context.Context, list string, w io.Writer) error {
	var subs []*Subscriber
	attrSet := map[string]bool{}
	err := s.Members(ctx, list, func(sub *Subscriber) error {
		subs = append(subs, sub)
		for k := range sub.Attrs {
			attrSet[k] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	var attrs []string
	for k := range attrSet {
		attrs = append(attrs, k)
	}
	sort.Strings(attrs)
	cw := csv.NewWriter(w)
	cw.Write(append([]string{"email", "name", "company", "country", "language", "role", "status"}, attrs...))
	for _, sub := range subs {
		row := []string{sub.Email, sub.Name, sub.Company, sub.Country, sub.Language, sub.Role, sub.Status}
		for _, a := range attrs {
			row = append(row, sub.Attrs[a])
		}
		cw.Write(row)
	}
	cw.Flush()
	return cw.Error()
}
