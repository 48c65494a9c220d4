package campaigns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// PersonalData is everything csrdesk holds about one address, as a subscriber gets it on request (GDPR art. 15).
type PersonalData struct {
	Email      string      `json:"email"`
	Subscriber *Subscriber `json:"subscriber,omitempty"`
	Lists      []string    `json:"lists"`
	Consent    []Consent   `json:"consent"`
	Mailings   []Delivery  `json:"mailings"`
	Exported   time.Time   `json:"exported"`
}

// Delivery is what became of one campaign's mail to one address.
type Delivery struct {
	Campaign int64  `json:"campaign"`
	Name     string `json:"name"`
	Outcome  string `json:"outcome"` // sent, failed, retry
	Reason   string `json:"reason,omitempty"`
}

// PersonalData collects what is held about an address.
func (s *Store) PersonalData(ctx context.Context, email string) (*PersonalData, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return nil, fmt.Errorf("personal data: %w: %v", ErrInvalid, err)
	}
	out := &PersonalData{Email: email, Lists: []string{}, Consent: []Consent{}, Mailings: []Delivery{}, Exported: s.now().UTC()}
	sub, err := s.Subscriber(ctx, email)
	switch {
	case err == nil:
		out.Subscriber = sub
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	if out.Lists, err = s.ListsOf(ctx, email); err != nil {
		return nil, err
	}
	if out.Lists == nil {
		out.Lists = []string{}
	}
	consent, err := s.Consents(ctx, email)
	if err != nil {
		return nil, err
	}
	out.Consent = append(out.Consent, consent...)
	err = s.eachCampaign(ctx, func(c *Campaign) error {
		k := campaignKeys(c.ID)
		outcome, err := s.rdb.HGet(ctx, k.delivery, email).Result()
		if err != nil || outcome == "" {
			return nil
		}
		d := Delivery{Campaign: c.ID, Name: c.Name, Outcome: outcome}
		if raw, err := s.rdb.HGet(ctx, k.failures, email).Result(); err == nil {
			var f Failure
			json.Unmarshal([]byte(raw), &f)
			d.Reason = f.Reason
		}
		out.Mailings = append(out.Mailings, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out.Subscriber == nil && len(out.Lists) == 0 && len(out.Consent) == 0 && len(out.Mailings) == 0 {
		return nil, fmt.Errorf("personal data: %s: %w", email, ErrNotFound)
	}
	return out, nil
}

// Erase removes an address everywhere (GDPR art. 17): the subscriber, their lists, consent history and every
// campaign's delivery record, failure, retry and queued job. Campaign counts stay, as they hold no address. What is
// left is the address's SuppressionHash, so that a later import does not bring it back by mistake; subscribing
// again themselves lifts it. Erase may be run again after an interruption: it finishes the job. One race is
// left: a message a worker is sending at that very moment is recorded after the erasure, under the address;
// erasing again once the campaign has moved on removes it.
func (s *Store) Erase(ctx context.Context, email string) error {
	email, err := NormalizeEmail(email)
	if err != nil {
		return fmt.Errorf("erase: %w: %v", ErrInvalid, err)
	}
	lists, err := s.rdb.HKeys(ctx, listsKey).Result()
	if err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	id, _ := s.rdb.HGet(ctx, subKey(email), "id").Result()
	pipe := s.rdb.TxPipeline()
	pipe.SAdd(ctx, suppressedKey, SuppressionHash(email)) // first: from now on no import brings it back
	for _, l := range lists {
		pipe.ZRem(ctx, membersKey(l), email)
	}
	pipe.ZRem(ctx, subsKey, email)
	if id != "" {
		pipe.HDel(ctx, idsKey, id)
	}
	pipe.Del(ctx, subKey(email), consentKey(email))
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	return s.eachCampaign(ctx, func(c *Campaign) error {
		k := campaignKeys(c.ID)
		keys := []string{k.delivery, k.attempts, k.failures, k.queued, k.retry, k.counts, k.jobs, k.sending}
		if err := eraseScript.Run(ctx, s.rdb, keys, email, workerGroup).Err(); err != nil {
			return fmt.Errorf("erase: campaign %d: %w", c.ID, err)
		}
		return nil
	})
}

// eraseScript removes an address from a campaign's records. Its counts stay right: a retry still waiting, and a
// job still queued (or held by a worker that has not recorded it yet), count as failed.
var eraseScript = redis.NewScript(lastDeliveredLua + `
local email = ARGV[1]
local counted = false -- as failed, once
if redis.call('HGET', KEYS[1], email) == 'retry' then
  redis.call('HINCRBY', KEYS[6], 'retrying', -1)
  redis.call('HINCRBY', KEYS[6], 'failed', 1)
  counted = true
end
redis.call('HDEL', KEYS[1], email)
redis.call('HDEL', KEYS[2], email)
redis.call('HDEL', KEYS[3], email)
redis.call('SREM', KEYS[4], email)
redis.call('ZREM', KEYS[5], email)
redis.call('HDEL', KEYS[8], email)
-- Jobs for the address: few, and only while the campaign runs. A job a worker holds (pending) or that none has
-- read yet (after the group's last delivered one) is not recorded: count it. A worker holding it finds it
-- acknowledged and does not count it again. The others are recorded, kept until trimmed: only deleted.
local last = lastDelivered(KEYS[7], ARGV[2])
local function unread(id)
  if not last then return true end
  local a1, a2 = string.match(id, '(%d+)-(%d+)')
  local b1, b2 = string.match(last, '(%d+)-(%d+)')
  a1, a2, b1, b2 = tonumber(a1), tonumber(a2), tonumber(b1), tonumber(b2)
  return a1 > b1 or (a1 == b1 and a2 > b2)
end
local start = '-'
while true do
  local page = redis.call('XRANGE', KEYS[7], start, '+', 'COUNT', 1000)
  for _, m in ipairs(page) do
    local f = m[2]
    if f[1] == 'e' and f[2] == email then
      local held = last and #redis.call('XPENDING', KEYS[7], ARGV[2], m[1], m[1], 1) > 0
      if held or unread(m[1]) then
        if held then redis.call('XACK', KEYS[7], ARGV[2], m[1]) end
        if not counted then
          redis.call('HINCRBY', KEYS[6], 'failed', 1)
          counted = true
        end
      end
      redis.call('XDEL', KEYS[7], m[1])
    end
  end
  if #page < 1000 then break end
  start = '(' .. page[#page][1]
end
return 0`)

// eachCampaign calls fn for every campaign, oldest first.
func (s *Store) eachCampaign(ctx context.Context, fn func(*Campaign) error) error {
	ids, err := s.rdb.ZRange(ctx, campaignsKey, 0, -1).Result()
	if err != nil {
		return err
	}
	for _, raw := range ids {
		id, _ := strconv.ParseInt(raw, 10, 64)
		c, err := s.Campaign(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}
