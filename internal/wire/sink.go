package wire

import "time"

// Sink is a control-plane record: a consumer of a stream's results that turns them into
// events and delivers them to one target (a webhook or an MQTT broker), at least once.
// Secrets are never stored: SecretEnv and PasswordEnv name environment variables of the
// process that runs the sink.
type Sink struct {
	Name     string `json:"name"`
	Stream   string `json:"stream"`
	Function string `json:"function,omitempty"` // only this function's results; "": all
	// One target.
	Webhook *WebhookTarget `json:"webhook,omitempty"`
	MQTT    *MQTTTarget    `json:"mqtt,omitempty"`
	// Filters; empty: everything.
	Events   []string `json:"events,omitempty"` // crossed, entered, left, detected
	Classes  []string `json:"classes,omitempty"`
	Cameras  []string `json:"cameras,omitempty"`
	Zones    []string `json:"zones,omitempty"`
	MinScore float32  `json:"min_score,omitempty"`
	// Cooldown is the least time between two events of one (camera, zone or class).
	Cooldown Duration `json:"cooldown,omitempty"`
	// MaxAttempts and MaxAge bound the delivery of one event; then it is dead-lettered.
	MaxAttempts    int       `json:"max_attempts,omitempty"`
	MaxAge         Duration  `json:"max_age,omitempty"`
	AllowLinkLocal bool      `json:"allow_link_local,omitempty"`
	Created        time.Time `json:"created"`
}

// WebhookTarget posts each event as JSON to URL.
type WebhookTarget struct {
	URL       string            `json:"url"`
	SecretEnv string            `json:"secret_env,omitempty"` // HMAC key: this variable's value
	Headers   map[string]string `json:"headers,omitempty"`
}

// MQTTTarget publishes events and retained counts to a broker.
type MQTTTarget struct {
	URL         string `json:"url"` // mqtt://HOST:PORT
	TopicPrefix string `json:"topic_prefix,omitempty"`
	Username    string `json:"username,omitempty"`
	PasswordEnv string `json:"password_env,omitempty"`
}

// SinkGroup is the Kafka consumer group of a sink.
func SinkGroup(name string) string { return "diplip.sink." + name }

// SinkDeadTopic is the topic a sink's dead letters go to.
func SinkDeadTopic(name string) string { return "diplip.sink." + name + ".dead" }

// SinkStatus is what one process did with a sink (counters since it started the sink),
// kept in the control plane for a while so that any gateway can list every process's.
type SinkStatus struct {
	Sink        string    `json:"sink"`
	Process     string    `json:"process"`
	State       string    `json:"state"`
	Delivered   int64     `json:"delivered"`
	Failed      int64     `json:"failed"`
	Retrying    int64     `json:"retrying"`
	Dead        int64     `json:"dead"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Updated     time.Time `json:"updated"`
}
