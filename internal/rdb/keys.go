package rdb

// The keyspace. Every Redis key csrdesk uses is named here, and nowhere else: a package builds its keys from
// these names and prefixes, and reaches only the keys Keyspace says it owns. Two features once shared
// "csrdesk:events" (the ticket event stream and the calendar's hash), and each broke the other; TestKeyspace fails
// when two patterns below can name the same key, and the whole-product test fails when Redis holds a key no
// pattern names, or one of another type than declared.
//
// The campaign keys of one campaign share the hash tag {c<id>} and the subscriber keys the tag {subs}, so that
// every script over them stays in one Redis Cluster slot. Keys made by go-redis/redis_rate get its "rate:" in
// front of the name given.
const (
	Marker = "csrdesk:dataset" // the data set's marker (see dataset.go)
	Health = "csrdesk:health"  // written by every health check, to see that Redis takes writes

	// The conversation engine (bot).
	ConvPrefix       = "csrdesk:conv:"        // + channel:chat
	HistoryPrefix    = "csrdesk:history:"     // + channel:chat
	ChatTicketPrefix = "csrdesk:chat-ticket:" // + channel:chat
	TicketPrefix     = "csrdesk:ticket:"      // + id, and + id:log
	TicketsOpen      = "csrdesk:tickets:open"
	TicketsAll       = "csrdesk:tickets:all"
	TicketsSeq       = "csrdesk:tickets:seq"
	TicketEvents     = "csrdesk:tickets:events"
	Notify           = "csrdesk:notify"  // a pub/sub channel, not a key: Redis keeps those apart, but a name is a name
	OutboxPrefix     = "csrdesk:outbox:" // + channel name
	UserRatePrefix   = "csrdesk:rate:"   // + channel:user, through redis_rate

	// The platform adapters.
	TelegramOffset       = "csrdesk:telegram:offset"
	TelegramUpdatePrefix = "csrdesk:telegram:update:" // + update id
	TelegramPacePrefix   = "csrdesk:telegram:pace:"   // + all, chat:id, group:id, through redis_rate
	SlackEventPrefix     = "csrdesk:slack:event:"     // + event id
	SlackUserPrefix      = "csrdesk:slack:user:"      // + user id
	SlackCardPrefix      = "csrdesk:slack:card:"      // + ticket id
	SlackThreadPrefix    = "csrdesk:slack:thread:"    // + thread ts
	WebChatPrefix        = "csrdesk:web:"             // + chat id
	WebRatePrefix        = "csrdesk:ratelimit:"       // + what:address, through redis_rate

	// Campaigns, subscribers, events.
	Campaigns          = "csrdesk:campaigns"
	CampaignsSeq       = "csrdesk:campaigns:seq"
	CampaignsActive    = "csrdesk:campaigns:active"
	MailRate           = "csrdesk:mail:rate" // through redis_rate
	CalendarEvents     = "csrdesk:events"
	SubsPrefix         = "csrdesk:{subs}:" // + lists, all, ids, suppressed, subscriber:email, list:name, consent:email, confirm-mails:hash
	CampaignPrefix     = "csrdesk:{c"      // + id + "}:" + part
	campaignPrefixTail = "}:"
)

// CampaignKey returns the key of one part of a campaign ("meta", "jobs", ...).
func CampaignKey(id, part string) string { return CampaignPrefix + id + campaignPrefixTail + part }

// Key declares a key, or a family of keys, in the pattern syntax of KeyPattern.
type Key struct {
	Pattern string // the name; <n> stands for a number, <hex> for hex digits, <s> for any text
	Type    string // what TYPE answers: string, hash, list, set, zset, stream; "channel" for pub/sub
	Owner   string // the package that reads and writes it
}

const rateLimiter = "rate:" // go-redis/redis_rate's prefix

// Keyspace is every key csrdesk uses.
var Keyspace = []Key{
	{Marker, "string", "internal/rdb"},
	{Health, "string", "internal/rdb"},

	{ConvPrefix + "<s>:<s>", "hash", "bot"},
	{HistoryPrefix + "<s>:<s>", "list", "bot"},
	{ChatTicketPrefix + "<s>:<s>", "string", "bot"},
	{TicketPrefix + "<n>", "hash", "bot"},
	{TicketPrefix + "<n>:log", "list", "bot"},
	{TicketsOpen, "zset", "bot"},
	{TicketsAll, "zset", "bot"},
	{TicketsSeq, "string", "bot"},
	{TicketEvents, "stream", "bot"},
	{Notify, "channel", "bot"},
	{OutboxPrefix + "<s>", "stream", "bot"},
	{rateLimiter + UserRatePrefix + "<s>:<s>", "string", "bot"},

	{TelegramOffset, "string", "bot/telegram"},
	{TelegramUpdatePrefix + "<n>", "string", "bot/telegram"},
	{rateLimiter + TelegramPacePrefix + "all", "string", "bot/telegram"},
	{rateLimiter + TelegramPacePrefix + "chat:<n>", "string", "bot/telegram"},
	{rateLimiter + TelegramPacePrefix + "group:<n>", "string", "bot/telegram"},
	{SlackEventPrefix + "<s>", "string", "bot/slack"},
	{SlackUserPrefix + "<s>", "string", "bot/slack"},
	{SlackCardPrefix + "<n>", "string", "bot/slack"},
	{SlackThreadPrefix + "<s>", "string", "bot/slack"},
	{WebChatPrefix + "<hex>", "stream", "bot/web"},
	{rateLimiter + WebRatePrefix + "<s>:<s>", "string", "bot/web"},

	{Campaigns, "zset", "campaigns"},
	{CampaignsSeq, "string", "campaigns"},
	{CampaignsActive, "set", "campaigns"},
	{rateLimiter + MailRate, "string", "campaigns"},
	{CalendarEvents, "hash", "campaigns"},
	{SubsPrefix + "lists", "hash", "campaigns"},
	{SubsPrefix + "all", "zset", "campaigns"},
	{SubsPrefix + "ids", "hash", "campaigns"},
	{SubsPrefix + "suppressed", "set", "campaigns"},
	{SubsPrefix + "subscriber:<s>", "hash", "campaigns"},
	{SubsPrefix + "list:<s>", "zset", "campaigns"},
	{SubsPrefix + "consent:<s>", "list", "campaigns"},
	{SubsPrefix + "confirm-mails:<s>", "string", "campaigns"},
	{CampaignKey("<n>", "meta"), "hash", "campaigns"},
	{CampaignKey("<n>", "jobs"), "stream", "campaigns"},
	{CampaignKey("<n>", "queued"), "set", "campaigns"},
	{CampaignKey("<n>", "cursor"), "hash", "campaigns"},
	{CampaignKey("<n>", "cursor:lock"), "string", "campaigns"},
	{CampaignKey("<n>", "delivery"), "hash", "campaigns"},
	{CampaignKey("<n>", "sending"), "hash", "campaigns"},
	{CampaignKey("<n>", "attempts"), "hash", "campaigns"},
	{CampaignKey("<n>", "failures"), "hash", "campaigns"},
	{CampaignKey("<n>", "retry"), "zset", "campaigns"},
	{CampaignKey("<n>", "counts"), "hash", "campaigns"},
}

// renamed lists keys that moved, with the type the old name held: a key found under the old name with that type
// is moved to the new name when a process starts (see migrate).
var renamed = []struct{ old, typ, new string }{
	// Until 2026-12 the ticket event stream was "csrdesk:events", the calendar's name.
	{CalendarEvents, "stream", TicketEvents},
}
