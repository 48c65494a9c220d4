// Package campaigns is the dissemination mailer: subscribers and lists, campaigns, the send queue on Redis and
// the workers that deliver it over SMTP.
package campaigns

import (
	"bufio"
	"bytes"
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

// Subscriber and list keys share the hash tag {subs}: an import's transaction and scripts touch several of
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
	Problems       []string // "line N: ..." for every row not imported
	Warnings       []string // "line N: ..." for rows imported with a field left out
}

// standard columns of an import; any other column is a free attribute.
var standard = map[string]bool{"email": true, "name": true, "company": true, "country": true, "language": true, "role": true}

const importBatch = 500

// ImportOptions says where an import goes and what it vouches for.
type ImportOptions struct {
	List      string
	Confirmed bool   // the importer vouches that the rows have given consent: they become active at once
	Source    string // the file's name, recorded with each new subscriber's consent
	Progress  func(n int)
}

// Import reads subscribers from CSV (a header row naming the columns; email is required) into a list. Every row
// that cannot be imported is reported with its line; valid rows are imported in batches, each batch atomically.
// New subscribers are unconfirmed (they receive no campaign until they confirm) unless opts.Confirmed; either way
// the import is recorded as their consent's origin. An existing subscriber is updated but keeps its status: an
// unsubscribed or bounced address stays so. An address erased on request is not imported again.
func (s *Store) Import(ctx context.Context, r io.Reader, opts ImportOptions) (*ImportReport, error) {
	list, read := opts.List, opts.Progress
	if err := s.listExists(ctx, list); err != nil {
		return nil, err
	}
	lr := &lineReader{r: bufio.NewReader(r), progress: read}
	cr := csv.NewReader(lr)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	header, err := cr.Read()
	var pe *csv.ParseError
	if err == io.EOF || errors.As(err, &pe) {
		return nil, fmt.Errorf("import: %w: line 1: cannot read the header row: %v", ErrInvalid, err)
	}
	if err != nil {
		return nil, fmt.Errorf("import: line 1: cannot read the header row: %w", err)
	}
	cols := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\uFEFF")))
		if h == "" {
			return nil, fmt.Errorf("import: %w: line 1: column %d has no name", ErrInvalid, i+1)
		}
		if _, dup := cols[h]; dup {
			return nil, fmt.Errorf("import: %w: line 1: column %q appears twice", ErrInvalid, h)
		}
		cols[h] = i
	}
	if _, ok := cols["email"]; !ok {
		return nil, fmt.Errorf("import: %w: line 1: the header has no email column (columns: %s)", ErrInvalid, strings.Join(header, ","))
	}
	rep := &ImportReport{}
	seen := map[string]int{} // email -> line
	var batch []*Subscriber
	var lines []int
	consent := Consent{Action: "imported", Via: "import", Source: opts.Source, Lists: []string{list}}
	if opts.Confirmed {
		consent.Action, consent.Text = "confirmed", "marked as having consented by the importer (import --confirmed)"
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
			return fmt.Errorf("import: %w", err)
		}
		keep := batch[:0]
		for i, sub := range batch {
			if erased[i] {
				rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: %s asked to be erased; it can only come back by subscribing again itself", lines[i], sub.Email))
				continue
			}
			keep = append(keep, sub)
		}
		added, err := s.save(ctx, list, keep, opts.Confirmed, consent)
		if err != nil {
			return err
		}
		rep.Added += added
		rep.Updated += len(keep) - added
		batch, lines = batch[:0], lines[:0]
		return nil
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.As(err, &pe) {
				rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: %v", pe.Line, pe.Err))
				continue
			}
			return nil, fmt.Errorf("import: %w", err)
		}
		line, _ := cr.FieldPos(0) // only valid for a record read without error
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // a blank line
		}
		// Every field, not the record's first line only: a quoted field may run over several lines.
		if slices.ContainsFunc(rec, func(f string) bool { return !utf8.ValidString(f) }) {
			rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: not valid UTF-8 (save the file as UTF-8)", line))
			continue
		}
		if len(rec) != len(header) {
			rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: %d fields, the header has %d", line, len(rec), len(header)))
			continue
		}
		field := func(name string) string {
			if i, ok := cols[name]; ok {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		email, err := NormalizeEmail(field("email"))
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: %v", line, err))
			continue
		}
		if first, dup := seen[email]; dup {
			rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: %s already on line %d", line, email, first))
			continue
		}
		seen[email] = line
		sub := &Subscriber{Email: email, Name: field("name"), Company: field("company"), Role: field("role"), Attrs: map[string]string{}}
		if c := field("country"); len(c) == 2 {
			sub.Country = strings.ToUpper(c)
		} else if c != "" {
			sub.Country = c
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("line %d: country %q is not a two-letter code; kept as written", line, c))
		}
		if l := field("language"); l != "" {
			if lang, ok := faq.ParseLang(l); ok {
				sub.Language = string(lang)
			} else {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("line %d: language %q is not one of en, de, it, fr, es; left empty (mails go out in English)", line, l))
			}
		}
		for name, i := range cols {
			if !standard[name] && strings.TrimSpace(rec[i]) != "" {
				sub.Attrs[name] = strings.TrimSpace(rec[i])
			}
		}
		batch, lines = append(batch, sub), append(lines, line)
		if len(batch) == importBatch {
			if err := flush(); err != nil {
				return rep, err
			}
		}
	}
	return rep, flush()
}

// saveScript upserts one subscriber and adds it to a list, keeping an existing subscriber's status, id and
// creation time (one stored before subscribers had ids gets one); a new one gets ARGV[10] as its status and the consent record ARGV[11]. An unconfirmed subscriber
// that an import vouches for (ARGV[12] = 1) becomes active. It returns 1 for a new subscriber.
var saveScript = redis.NewScript(`
local new = redis.call('EXISTS', KEYS[1]) == 0
redis.call('HSET', KEYS[1], 'email', ARGV[1], 'name', ARGV[2], 'company', ARGV[3], 'country', ARGV[4],
  'language', ARGV[5], 'role', ARGV[6], 'attrs', ARGV[7])
if new then
  redis.call('HSET', KEYS[1], 'status', ARGV[10], 'created', ARGV[8], 'id', ARGV[13])
  redis.call('HSET', KEYS[5], ARGV[13], ARGV[1])
  redis.call('ZADD', KEYS[2], ARGV[9], ARGV[1])
  redis.call('RPUSH', KEYS[4], ARGV[11])
else
  if ARGV[12] == '1' and redis.call('HGET', KEYS[1], 'status') == 'unconfirmed' then
    redis.call('HSET', KEYS[1], 'status', 'active')
    redis.call('RPUSH', KEYS[4], ARGV[11])
  end
  if redis.call('HSETNX', KEYS[1], 'id', ARGV[13]) == 1 then -- stored before subscribers had ids
    redis.call('HSET', KEYS[5], ARGV[13], ARGV[1])
  end
end
redis.call('ZADD', KEYS[3], 'NX', ARGV[9], ARGV[1])
if new then return 1 end
return 0`)

// save writes a batch in one transaction: all of it or none.
func (s *Store) save(ctx context.Context, list string, batch []*Subscriber, confirmed bool, consent Consent) (int, error) {
	now := s.now().UTC()
	consent.At = now
	record, _ := json.Marshal(consent)
	status, vouch := Unconfirmed, "0"
	if confirmed {
		status, vouch = Active, "1"
	}
	pipe := s.rdb.TxPipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, sub := range batch {
		attrs, _ := json.Marshal(sub.Attrs)
		// Eval, not EvalSha: a transaction cannot fall back when Redis does not have the script cached.
		cmds[i] = saveScript.Eval(ctx, pipe, []string{subKey(sub.Email), subsKey, membersKey(list), consentKey(sub.Email), idsKey},
			sub.Email, sub.Name, sub.Company, sub.Country, sub.Language, sub.Role, string(attrs), now.Format(time.RFC3339), now.UnixMilli(),
			status, record, vouch, newID())
	}
	if len(batch) == 0 {
		return 0, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("import: save: %w", err)
	}
	added := 0
	for _, c := range cmds {
		if n, _ := c.Int(); n == 1 {
			added++
		}
	}
	return added, nil
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

// lineReader passes a file to the CSV reader without its byte order mark, counting bytes for a progress bar.
type lineReader struct {
	r        *bufio.Reader
	line     int
	progress func(int)
	pending  []byte
}

func (l *lineReader) Read(p []byte) (int, error) {
	if len(l.pending) == 0 {
		data, err := l.r.ReadBytes('\n')
		if len(data) == 0 {
			return 0, err
		}
		l.line++
		if l.line == 1 {
			data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
		}
		if l.progress != nil {
			l.progress(len(data))
		}
		l.pending = data
	}
	n := copy(p, l.pending)
	l.pending = l.pending[n:]
	return n, nil
}
