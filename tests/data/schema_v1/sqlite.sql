-- The schema retain's create_all made on sqlite before schema revisions existed
-- (schema_version 1), statement for statement; tests build such a database from it.
CREATE TABLE customers (
	id INTEGER NOT NULL,
	external_id VARCHAR NOT NULL,
	email VARCHAR NOT NULL,
	email_key VARCHAR NOT NULL,
	first_name VARCHAR NOT NULL,
	last_name VARCHAR NOT NULL,
	accepts_marketing BOOLEAN NOT NULL,
	consent_at DATETIME,
	consent_source VARCHAR,
	country VARCHAR,
	timezone VARCHAR,
	tags VARCHAR NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (external_id),
	UNIQUE (email_key)
);

CREATE TABLE products (
	id INTEGER NOT NULL,
	sku VARCHAR NOT NULL,
	name VARCHAR NOT NULL,
	category VARCHAR NOT NULL,
	price_cents INTEGER NOT NULL,
	compare_at_price_cents INTEGER,
	url VARCHAR NOT NULL,
	image_url VARCHAR NOT NULL,
	created_at DATETIME NOT NULL,
	price_reduced_at DATETIME,
	PRIMARY KEY (id),
	UNIQUE (sku)
);

CREATE INDEX ix_products_category ON products (category);

CREATE TABLE meta (
	"key" VARCHAR NOT NULL,
	value VARCHAR NOT NULL,
	PRIMARY KEY ("key"),
	UNIQUE ("key")
);

CREATE TABLE suppressions (
	email_key VARCHAR NOT NULL,
	reason VARCHAR(12) NOT NULL,
	source VARCHAR NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (email_key)
);

CREATE TABLE runs (
	id VARCHAR NOT NULL,
	pid INTEGER NOT NULL,
	host VARCHAR NOT NULL,
	started_at DATETIME NOT NULL,
	heartbeat_at DATETIME NOT NULL,
	finished_at DATETIME,
	campaigns VARCHAR NOT NULL,
	summary VARCHAR NOT NULL,
	paused_reason VARCHAR,
	PRIMARY KEY (id)
);

CREATE TABLE leases (
	name VARCHAR NOT NULL,
	holder VARCHAR NOT NULL,
	acquired_at DATETIME NOT NULL,
	expires_at DATETIME NOT NULL,
	PRIMARY KEY (name)
);

CREATE TABLE campaign_state (
	campaign_id VARCHAR NOT NULL,
	paused BOOLEAN NOT NULL,
	paused_reason VARCHAR,
	paused_at DATETIME,
	last_fire_at DATETIME,
	last_run_id VARCHAR,
	PRIMARY KEY (campaign_id)
);

CREATE TABLE orders (
	id INTEGER NOT NULL,
	external_id VARCHAR NOT NULL,
	customer_id INTEGER NOT NULL,
	created_at DATETIME NOT NULL,
	local_date DATE NOT NULL,
	status VARCHAR(9) NOT NULL,
	total_cents INTEGER NOT NULL,
	currency VARCHAR NOT NULL,
	discount_code VARCHAR,
	PRIMARY KEY (id),
	UNIQUE (external_id),
	FOREIGN KEY(customer_id) REFERENCES customers (id)
);

CREATE INDEX ix_orders_discount_code ON orders (discount_code);

CREATE INDEX ix_orders_customer_metrics ON orders (customer_id, status, created_at, total_cents, local_date);

CREATE TABLE customer_metrics (
	customer_id INTEGER NOT NULL,
	orders INTEGER NOT NULL,
	spent_cents INTEGER NOT NULL,
	avg_order_value_cents INTEGER NOT NULL,
	first_order_at DATETIME,
	last_order_at DATETIME,
	recency_days INTEGER,
	r_score INTEGER,
	f_score INTEGER,
	m_score INTEGER,
	dormancy VARCHAR(11) NOT NULL,
	value_tier VARCHAR(1),
	lifecycle VARCHAR(11) NOT NULL,
	PRIMARY KEY (customer_id),
	FOREIGN KEY(customer_id) REFERENCES customers (id)
);

CREATE TABLE deliveries (
	id INTEGER NOT NULL,
	campaign_id VARCHAR NOT NULL,
	customer_id INTEGER NOT NULL,
	occasion VARCHAR NOT NULL,
	status VARCHAR(10) NOT NULL,
	reason VARCHAR,
	priority INTEGER NOT NULL,
	payload VARCHAR NOT NULL,
	message_id VARCHAR,
	attempts INTEGER NOT NULL,
	planned_at DATETIME NOT NULL,
	next_attempt_at DATETIME,
	claimed_at DATETIME,
	claimed_by VARCHAR,
	sent_at DATETIME,
	PRIMARY KEY (id),
	CONSTRAINT uq_delivery_occasion UNIQUE (campaign_id, customer_id, occasion),
	FOREIGN KEY(customer_id) REFERENCES customers (id)
);

CREATE INDEX ix_deliveries_message_id ON deliveries (message_id);

CREATE INDEX ix_deliveries_customer ON deliveries (customer_id, campaign_id, planned_at);

CREATE INDEX ix_deliveries_status ON deliveries (status, next_attempt_at);

CREATE TABLE order_items (
	id INTEGER NOT NULL,
	order_id INTEGER NOT NULL,
	sku VARCHAR NOT NULL,
	quantity INTEGER NOT NULL,
	unit_price_cents INTEGER NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(order_id) REFERENCES orders (id)
);

CREATE INDEX ix_order_items_order_id ON order_items (order_id);

CREATE INDEX ix_order_items_sku_order ON order_items (sku, order_id);

CREATE TABLE coupons (
	id INTEGER NOT NULL,
	code VARCHAR NOT NULL,
	kind VARCHAR(6) NOT NULL,
	campaign_id VARCHAR NOT NULL,
	customer_id INTEGER NOT NULL,
	delivery_id INTEGER,
	percent_off INTEGER,
	amount_off_cents INTEGER,
	min_spend_cents INTEGER NOT NULL,
	gift_sku VARCHAR,
	gift_card_cents INTEGER,
	bundle_id VARCHAR,
	bundle_price_cents INTEGER,
	period VARCHAR,
	issued_at DATETIME NOT NULL,
	expires_at DATETIME,
	PRIMARY KEY (id),
	UNIQUE (code),
	FOREIGN KEY(customer_id) REFERENCES customers (id),
	UNIQUE (delivery_id),
	FOREIGN KEY(delivery_id) REFERENCES deliveries (id)
);

CREATE INDEX ix_coupons_customer_id ON coupons (customer_id);

CREATE INDEX ix_coupons_campaign_id ON coupons (campaign_id);

CREATE TABLE product_announcements (
	customer_id INTEGER NOT NULL,
	product_id INTEGER NOT NULL,
	delivery_id INTEGER NOT NULL,
	PRIMARY KEY (customer_id, product_id),
	FOREIGN KEY(customer_id) REFERENCES customers (id),
	FOREIGN KEY(product_id) REFERENCES products (id),
	FOREIGN KEY(delivery_id) REFERENCES deliveries (id)
);
