"""The CRM's tables as numbered migrations, applied by `callcenter.database.apply_migrations`.

Rules: migration N is never edited once released (add N+1); SQL stays portable to PostgreSQL
(INTEGER/TEXT/REAL, ISO-8601 UTC text timestamps, no SQLite-only functions in business tables;
`INTEGER PRIMARY KEY` becomes an identity column there). Columns and indexes are planned for the
million-member bench: caller-ID look-up is one index probe on `member_phones.e164`; name search
goes through the character n-gram table `member_name_grams` instead of scanning `members`.
"""

from __future__ import annotations

_V1_TABLES = """
-- 机构管理: the organisation as a tree. `path` is the materialised path of ids ('/1/4/'),
-- so a department's subtree is one indexed prefix match.
CREATE TABLE departments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    parent_id INTEGER REFERENCES departments (id),
    path TEXT NOT NULL,
    sort_order INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE INDEX ix_departments_parent ON departments (parent_id, sort_order);
CREATE INDEX ix_departments_path ON departments (path);

-- 角色管理: a role is a permission set plus a data scope.
CREATE TABLE roles (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    data_scope TEXT NOT NULL CHECK (data_scope IN ('own', 'department', 'all')),
    builtin INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE role_permissions (
    role_id INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission TEXT NOT NULL,
    PRIMARY KEY (role_id, permission)
);

-- 用户管理
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    department_id INTEGER REFERENCES departments (id),
    active INTEGER NOT NULL DEFAULT 1,
    password_hash TEXT,
    phone TEXT,
    email TEXT,
    -- service area of a field technician, matched against a work order's region at dispatch
    region TEXT,
    -- the agent's SIP extension, for screen pop and click-to-call
    extension TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_login_at TEXT
);
CREATE INDEX ix_users_department ON users (department_id);
CREATE TABLE user_roles (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id INTEGER NOT NULL REFERENCES roles (id),
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX ix_user_roles_role ON user_roles (role_id);

-- 字典管理: customer types, relationship levels, ticket categories, source channels, ...
CREATE TABLE dictionary_items (
    id INTEGER PRIMARY KEY,
    dictionary TEXT NOT NULL,
    code TEXT NOT NULL,
    label TEXT NOT NULL,
    sort_order INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    UNIQUE (dictionary, code)
);

-- Site settings that business rules read (fraud windows, default warranty).
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- 会员级别: configurable tiers; a higher rank is a more valuable member (VIP routing reads it).
CREATE TABLE member_levels (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    rank INTEGER NOT NULL UNIQUE
);

CREATE TABLE members (
    id INTEGER PRIMARY KEY,
    card_no TEXT UNIQUE,
    name TEXT NOT NULL,
    -- lower-cased, blanks removed: what name search compares against
    name_key TEXT NOT NULL,
    gender TEXT NOT NULL DEFAULT 'unknown' CHECK (gender IN ('male', 'female', 'unknown')),
    email TEXT,
    birthday TEXT,
    -- 'MM-DD' of the birthday, indexed for birthday greetings
    birth_md TEXT,
    level_code TEXT REFERENCES member_levels (code),
    customer_type TEXT,
    relationship_level TEXT,
    source_channel TEXT,
    blacklisted INTEGER NOT NULL DEFAULT 0,
    blacklist_reason TEXT,
    notes TEXT NOT NULL DEFAULT '',
    owner_id INTEGER REFERENCES users (id),
    -- the sum of points_entries.amount, kept here in the same transaction as each entry
    points_balance INTEGER NOT NULL DEFAULT 0,
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX ix_members_name_key ON members (name_key);
CREATE INDEX ix_members_email ON members (email);
CREATE INDEX ix_members_level ON members (level_code, id);
CREATE INDEX ix_members_owner ON members (owner_id, id);
CREATE INDEX ix_members_birth_md ON members (birth_md);

-- Every number of a member in E.164; the caller-ID look-up is one probe of the primary key.
-- A mobile belongs to one person; a landline may be shared by a household or an office.
CREATE TABLE member_phones (
    e164 TEXT NOT NULL,
    member_id INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('mobile', 'landline', 'other')),
    raw TEXT NOT NULL,
    is_primary INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (e164, member_id)
);
CREATE UNIQUE INDEX ux_member_phones_mobile ON member_phones (e164) WHERE kind = 'mobile';
CREATE INDEX ix_member_phones_member ON member_phones (member_id);

CREATE TABLE member_tags (
    member_id INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (member_id, tag)
);
CREATE INDEX ix_member_tags_tag ON member_tags (tag, member_id);

-- Every character and every pair of adjacent characters of members.name_key: a substring
-- search looks its n-grams up here (an index probe) instead of scanning a million names.
CREATE TABLE member_name_grams (
    gram TEXT NOT NULL,
    member_id INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    PRIMARY KEY (gram, member_id)
);
CREATE INDEX ix_member_name_grams_member ON member_name_grams (member_id);

-- 积分: an append-only ledger; amount is signed (earn > 0, spend < 0, adjust either way).
CREATE TABLE points_entries (
    id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members (id),
    kind TEXT NOT NULL CHECK (kind IN ('earn', 'spend', 'adjust')),
    amount INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    reason TEXT NOT NULL,
    reference TEXT,
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL
);
CREATE INDEX ix_points_entries_member ON points_entries (member_id, id);

-- Calls as the ACD's CDR events report them; dispositions are Asterisk's CDR words.
CREATE TABLE calls (
    id INTEGER PRIMARY KEY,
    call_uuid TEXT UNIQUE,
    direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound', 'internal')),
    caller TEXT NOT NULL,
    callee TEXT NOT NULL,
    member_id INTEGER REFERENCES members (id),
    agent_id INTEGER REFERENCES users (id),
    queue TEXT,
    started_at TEXT NOT NULL,
    answered_at TEXT,
    duration INTEGER NOT NULL DEFAULT 0,
    billsec INTEGER NOT NULL DEFAULT 0,
    disposition TEXT NOT NULL,
    recording_ref TEXT
);
CREATE INDEX ix_calls_member ON calls (member_id, started_at);
CREATE INDEX ix_calls_started ON calls (started_at);
CREATE INDEX ix_calls_agent ON calls (agent_id, started_at);

-- 服务时限: minutes to resolve, per ticket type and priority.
CREATE TABLE ticket_sla (
    ticket_type TEXT NOT NULL,
    priority INTEGER NOT NULL,
    resolve_minutes INTEGER NOT NULL CHECK (resolve_minutes > 0),
    PRIMARY KEY (ticket_type, priority)
);

-- 服务单: consultations, complaints, suggestions.
CREATE TABLE tickets (
    id INTEGER PRIMARY KEY,
    member_id INTEGER REFERENCES members (id),
    ticket_type TEXT NOT NULL CHECK (ticket_type IN ('consultation', 'complaint', 'suggestion')),
    category TEXT,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    subject TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    channel TEXT,
    contact_phone TEXT,
    call_id INTEGER REFERENCES calls (id),
    assignee_id INTEGER REFERENCES users (id),
    department_id INTEGER REFERENCES departments (id),
    created_by INTEGER REFERENCES users (id),
    due_at TEXT,
    resolution TEXT,
    reopen_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    resolved_at TEXT,
    closed_at TEXT
);
CREATE INDEX ix_tickets_member ON tickets (member_id, created_at);
CREATE INDEX ix_tickets_assignee ON tickets (assignee_id, status);
CREATE INDEX ix_tickets_department ON tickets (department_id, status);
CREATE INDEX ix_tickets_created ON tickets (created_at);
CREATE INDEX ix_tickets_status ON tickets (status, priority, due_at);

CREATE TABLE ticket_events (
    id INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets (id),
    action TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT,
    body TEXT NOT NULL DEFAULT '',
    actor_id INTEGER REFERENCES users (id),
    actor_name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX ix_ticket_events_ticket ON ticket_events (ticket_id, id);

-- 派工单 / 完工单 / 审核单: one after-sales work order through its life.
CREATE TABLE work_orders (
    id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members (id),
    ticket_id INTEGER REFERENCES tickets (id),
    service_type TEXT NOT NULL CHECK (service_type IN ('install', 'repair', 'maintenance', 'inspection')),
    -- 保内: the customer claims free service under warranty
    warranty_claim INTEGER NOT NULL DEFAULT 1,
    product_model TEXT NOT NULL,
    serial_no TEXT NOT NULL,
    purchase_date TEXT,
    warranty_months INTEGER,
    fault_description TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '',
    region TEXT,
    contact_phone TEXT,
    appointment_at TEXT,
    status TEXT NOT NULL,
    technician_id INTEGER REFERENCES users (id),
    department_id INTEGER REFERENCES departments (id),
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    dispatched_at TEXT,
    completed_at TEXT,
    -- 完工: what the technician found and did
    service_date TEXT,
    customer_requests TEXT,
    customer_opinion TEXT,
    device_state TEXT,
    completion_seconds INTEGER,
    -- 审核
    audited_at TEXT,
    audited_by INTEGER REFERENCES users (id),
    audit_note TEXT
);
CREATE INDEX ix_work_orders_member_serial ON work_orders (member_id, serial_no, created_at);
CREATE INDEX ix_work_orders_serial ON work_orders (serial_no);
CREATE INDEX ix_work_orders_technician ON work_orders (technician_id, status);
CREATE INDEX ix_work_orders_status ON work_orders (status, created_at);
CREATE INDEX ix_work_orders_created ON work_orders (created_at);

CREATE TABLE work_order_parts (
    id INTEGER PRIMARY KEY,
    work_order_id INTEGER NOT NULL REFERENCES work_orders (id),
    part_no TEXT NOT NULL,
    name TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0)
);
CREATE INDEX ix_work_order_parts_order ON work_order_parts (work_order_id);

-- Fraud checks flag, they do not silently accept: 重单 duplicate, 超保 out of warranty.
CREATE TABLE work_order_flags (
    id INTEGER PRIMARY KEY,
    work_order_id INTEGER NOT NULL REFERENCES work_orders (id),
    code TEXT NOT NULL,
    detail TEXT NOT NULL,
    related_work_order_id INTEGER REFERENCES work_orders (id),
    created_at TEXT NOT NULL,
    UNIQUE (work_order_id, code)
);

CREATE TABLE work_order_events (
    id INTEGER PRIMARY KEY,
    work_order_id INTEGER NOT NULL REFERENCES work_orders (id),
    action TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT,
    body TEXT NOT NULL DEFAULT '',
    actor_id INTEGER REFERENCES users (id),
    actor_name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX ix_work_order_events_order ON work_order_events (work_order_id, id);

-- 小记: free notes agents write about a member, shown in the timeline.
CREATE TABLE member_notes (
    id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members (id),
    body TEXT NOT NULL,
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL
);
CREATE INDEX ix_member_notes_member ON member_notes (member_id, created_at);

-- 日志管理: every write, with the state before and after as JSON.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    user_id INTEGER,
    username TEXT NOT NULL,
    entity TEXT NOT NULL,
    entity_id INTEGER,
    action TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
CREATE INDEX ix_audit_log_entity ON audit_log (entity, entity_id, id);
CREATE INDEX ix_audit_log_created ON audit_log (created_at);
CREATE INDEX ix_audit_log_user ON audit_log (user_id, id);
"""

_V1_DEFAULTS = """
INSERT INTO roles (id, name, display_name, data_scope, builtin) VALUES
    (1, 'admin', '系统管理员', 'all', 1),
    (2, 'supervisor', '主管', 'department', 1),
    (3, 'agent', '座席', 'own', 1),
    (4, 'technician', '维修技师', 'own', 1),
    (5, 'auditor', '审核员', 'all', 1);

-- admin: everything but being dispatched to (a manager is not a field technician)
INSERT INTO role_permissions (role_id, permission) VALUES
    (1, 'org.read'), (1, 'org.write'), (1, 'settings.write'), (1, 'audit.read'),
    (1, 'member.read'), (1, 'member.write'), (1, 'points.write'), (1, 'points.adjust'),
    (1, 'ticket.read'), (1, 'ticket.write'), (1, 'ticket.assign'),
    (1, 'workorder.read'), (1, 'workorder.write'), (1, 'workorder.complete'), (1, 'workorder.audit'),
    (1, 'call.read'), (1, 'call.write'), (1, 'catalogue.approve'), (1, 'report.read'),
    (2, 'org.read'),
    (2, 'member.read'), (2, 'member.write'), (2, 'points.write'), (2, 'points.adjust'),
    (2, 'ticket.read'), (2, 'ticket.write'), (2, 'ticket.assign'),
    (2, 'workorder.read'), (2, 'workorder.write'), (2, 'workorder.complete'),
    (2, 'call.read'), (2, 'report.read'),
    (3, 'member.read'), (3, 'member.write'), (3, 'points.write'),
    (3, 'ticket.read'), (3, 'ticket.write'),
    (3, 'workorder.read'), (3, 'workorder.write'),
    (3, 'call.read'),
    (4, 'member.read'), (4, 'workorder.read'), (4, 'workorder.complete'), (4, 'workorder.receive'),
    (5, 'org.read'), (5, 'audit.read'), (5, 'member.read'), (5, 'ticket.read'),
    (5, 'workorder.read'), (5, 'workorder.audit'), (5, 'call.read'), (5, 'report.read');

INSERT INTO member_levels (code, name, rank) VALUES
    ('normal', '普通', 0),
    ('silver', '银卡', 10),
    ('gold', '金卡', 20),
    ('diamond', '钻石', 30);

INSERT INTO dictionary_items (dictionary, code, label, sort_order) VALUES
    ('customer_type', 'personal', '个人客户', 10),
    ('customer_type', 'corporate', '企业客户', 20),
    ('customer_type', 'partner', '合作伙伴', 30),
    ('relationship_level', 'general', '一般', 10),
    ('relationship_level', 'good', '良好', 20),
    ('relationship_level', 'close', '密切', 30),
    ('ticket_category', 'product', '产品咨询', 10),
    ('ticket_category', 'service', '服务质量', 20),
    ('ticket_category', 'price', '价格费用', 30),
    ('ticket_category', 'appointment', '预约', 40),
    ('ticket_category', 'other', '其他', 90),
    ('source_channel', 'phone', '电话', 10),
    ('source_channel', 'web', '网站', 20),
    ('source_channel', 'wechat', '微信', 30),
    ('source_channel', 'store', '门店', 40),
    ('source_channel', 'referral', '朋友介绍', 50),
    ('source_channel', 'print', '报纸杂志', 60),
    ('source_channel', 'partner', '合作伙伴', 70);

-- priorities: 1 low, 2 normal, 3 high, 4 urgent
INSERT INTO ticket_sla (ticket_type, priority, resolve_minutes) VALUES
    ('complaint', 4, 120), ('complaint', 3, 240), ('complaint', 2, 1440), ('complaint', 1, 2880),
    ('consultation', 4, 240), ('consultation', 3, 480), ('consultation', 2, 1440), ('consultation', 1, 4320),
    ('suggestion', 4, 1440), ('suggestion', 3, 2880), ('suggestion', 2, 4320), ('suggestion', 1, 10080);

INSERT INTO settings (key, value) VALUES
    ('workorder.duplicate_window_days', '30'),
    ('workorder.default_warranty_months', '12');
"""

_V2_TABLES = """
-- 服务项目管理: the live catalogue. A row changes only when an approver publishes a change.
CREATE TABLE catalogue_items (
    id INTEGER PRIMARY KEY,
    -- 货号: unique and fixed for the item's life
    sku TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('service', 'product')),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    category TEXT,
    -- CNY in fen (分): integer money, no rounding drift
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    -- services only: how long an expert is booked
    duration_minutes INTEGER,
    status TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    approved_by INTEGER REFERENCES users (id),
    approved_at TEXT
);
CREATE INDEX ix_catalogue_items_kind ON catalogue_items (kind, status, name);

-- Proposed versions, kept apart from the live rows until approved (审核才生效).
CREATE TABLE catalogue_changes (
    id INTEGER PRIMARY KEY,
    -- NULL: a new item
    item_id INTEGER REFERENCES catalogue_items (id),
    sku TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('service', 'product')),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    category TEXT,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    duration_minutes INTEGER,
    status TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'withdrawn')),
    proposed_by INTEGER REFERENCES users (id),
    proposed_at TEXT NOT NULL,
    reviewed_by INTEGER REFERENCES users (id),
    reviewed_at TEXT,
    review_note TEXT
);
-- At most one pending version per item code: two rival drafts would make approval order matter.
CREATE UNIQUE INDEX ux_catalogue_changes_pending ON catalogue_changes (sku) WHERE state = 'pending';
CREATE INDEX ix_catalogue_changes_state ON catalogue_changes (state, id);
CREATE INDEX ix_catalogue_changes_item ON catalogue_changes (item_id, id);

-- 专家: users who can be booked, with the services they perform.
CREATE TABLE experts (
    user_id INTEGER PRIMARY KEY REFERENCES users (id),
    title TEXT NOT NULL DEFAULT '',
    bio TEXT NOT NULL DEFAULT '',
    active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE expert_services (
    expert_id INTEGER NOT NULL REFERENCES experts (user_id),
    item_id INTEGER NOT NULL REFERENCES catalogue_items (id),
    PRIMARY KEY (expert_id, item_id)
);
CREATE INDEX ix_expert_services_item ON expert_services (item_id);
-- Weekly working hours in the site's local time: minutes after midnight, Monday = 0.
CREATE TABLE expert_hours (
    id INTEGER PRIMARY KEY,
    expert_id INTEGER NOT NULL REFERENCES experts (user_id),
    weekday INTEGER NOT NULL CHECK (weekday BETWEEN 0 AND 6),
    start_minute INTEGER NOT NULL CHECK (start_minute >= 0),
    end_minute INTEGER NOT NULL CHECK (end_minute <= 1440 AND end_minute > start_minute)
);
CREATE INDEX ix_expert_hours_expert ON expert_hours (expert_id, weekday);
-- Days off (whole day when no times) and extra hours on one calendar day.
CREATE TABLE expert_exceptions (
    id INTEGER PRIMARY KEY,
    expert_id INTEGER NOT NULL REFERENCES experts (user_id),
    day TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('off', 'extra')),
    start_minute INTEGER,
    end_minute INTEGER,
    note TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE INDEX ix_expert_exceptions_expert ON expert_exceptions (expert_id, day);

-- 电话预约 / 专家咨询
CREATE TABLE appointments (
    id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members (id),
    expert_id INTEGER NOT NULL REFERENCES users (id),
    item_id INTEGER NOT NULL REFERENCES catalogue_items (id),
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('booked', 'completed', 'cancelled', 'no_show')),
    -- the paid service order this visit delivers (服务购买 → 服务单)
    order_id INTEGER,
    channel TEXT,
    note TEXT NOT NULL DEFAULT '',
    -- what the expert learnt in the consultation: basic facts and the member's wishes
    consultation_notes TEXT,
    customer_needs TEXT,
    reschedule_count INTEGER NOT NULL DEFAULT 0,
    cancel_reason TEXT,
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    completed_at TEXT,
    cancelled_at TEXT
);
CREATE INDEX ix_appointments_expert ON appointments (expert_id, starts_at);
CREATE INDEX ix_appointments_member ON appointments (member_id, starts_at);
CREATE INDEX ix_appointments_starts ON appointments (starts_at);
CREATE INDEX ix_appointments_order ON appointments (order_id);
-- One row per 5-minute granule a booked appointment holds: the primary key makes a double
-- booking impossible even for a writer that skipped the overlap check (another node, a script).
CREATE TABLE appointment_slots (
    expert_id INTEGER NOT NULL REFERENCES users (id),
    slot_start TEXT NOT NULL,
    appointment_id INTEGER NOT NULL REFERENCES appointments (id),
    PRIMARY KEY (expert_id, slot_start)
);
CREATE INDEX ix_appointment_slots_appointment ON appointment_slots (appointment_id);
-- Services the expert recommends after the consultation (推荐项目).
CREATE TABLE appointment_recommendations (
    id INTEGER PRIMARY KEY,
    appointment_id INTEGER NOT NULL REFERENCES appointments (id),
    item_id INTEGER NOT NULL REFERENCES catalogue_items (id),
    note TEXT NOT NULL DEFAULT '',
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL,
    UNIQUE (appointment_id, item_id)
);

-- 服务购买: what a member bought, at the price of the day.
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members (id),
    status TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'completed', 'cancelled', 'refunded')),
    total_cents INTEGER NOT NULL CHECK (total_cents >= 0),
    payment_method TEXT,
    -- the consultation where the purchase was made, if any
    appointment_id INTEGER REFERENCES appointments (id),
    note TEXT NOT NULL DEFAULT '',
    cancel_reason TEXT,
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    paid_at TEXT,
    completed_at TEXT,
    cancelled_at TEXT
);
CREATE INDEX ix_orders_member ON orders (member_id, created_at);
CREATE INDEX ix_orders_status ON orders (status, created_at);
CREATE INDEX ix_orders_paid ON orders (paid_at);
CREATE TABLE order_items (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    item_id INTEGER NOT NULL REFERENCES catalogue_items (id),
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    amount_cents INTEGER NOT NULL
);
CREATE INDEX ix_order_items_order ON order_items (order_id);
CREATE INDEX ix_order_items_item ON order_items (item_id);

-- 客户调查: survey definitions; questions are frozen once the survey is active.
CREATE TABLE surveys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN ('draft', 'active', 'closed')),
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE survey_questions (
    id INTEGER PRIMARY KEY,
    survey_id INTEGER NOT NULL REFERENCES surveys (id),
    position INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('scale', 'choice', 'multi_choice', 'text')),
    prompt TEXT NOT NULL,
    options_json TEXT,
    required INTEGER NOT NULL DEFAULT 1,
    -- a 1-5 scale that counts towards the satisfaction figures
    satisfaction INTEGER NOT NULL DEFAULT 0,
    UNIQUE (survey_id, position)
);
CREATE TABLE survey_campaigns (
    id INTEGER PRIMARY KEY,
    survey_id INTEGER NOT NULL REFERENCES surveys (id),
    name TEXT NOT NULL,
    filter_json TEXT NOT NULL,
    task_count INTEGER NOT NULL,
    due_at TEXT,
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL
);

-- 售后回访: follow-up calls, created after a completed service order or an approved work
-- order, by survey campaigns, or by hand.
CREATE TABLE return_visits (
    id INTEGER PRIMARY KEY,
    member_id INTEGER NOT NULL REFERENCES members (id),
    reason TEXT NOT NULL CHECK (reason IN ('order', 'work_order', 'campaign', 'manual')),
    order_id INTEGER REFERENCES orders (id),
    work_order_id INTEGER REFERENCES work_orders (id),
    campaign_id INTEGER REFERENCES survey_campaigns (id),
    survey_id INTEGER REFERENCES surveys (id),
    -- whose service the member is asked about: the technician, the expert, the seller
    staff_id INTEGER REFERENCES users (id),
    assignee_id INTEGER REFERENCES users (id),
    status TEXT NOT NULL CHECK (status IN ('open', 'done', 'cancelled')),
    outcome TEXT CHECK (outcome IN ('reached', 'unreachable', 'refused')),
    attempts INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT '',
    due_at TEXT,
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    completed_at TEXT
);
CREATE UNIQUE INDEX ux_return_visits_order ON return_visits (order_id) WHERE order_id IS NOT NULL;
CREATE UNIQUE INDEX ux_return_visits_work_order ON return_visits (work_order_id) WHERE work_order_id IS NOT NULL;
CREATE UNIQUE INDEX ux_return_visits_campaign ON return_visits (campaign_id, member_id) WHERE campaign_id IS NOT NULL;
CREATE INDEX ix_return_visits_status ON return_visits (status, due_at);
CREATE INDEX ix_return_visits_assignee ON return_visits (assignee_id, status);
CREATE INDEX ix_return_visits_member ON return_visits (member_id, created_at);
CREATE INDEX ix_return_visits_completed ON return_visits (completed_at);

CREATE TABLE survey_responses (
    id INTEGER PRIMARY KEY,
    survey_id INTEGER NOT NULL REFERENCES surveys (id),
    return_visit_id INTEGER NOT NULL UNIQUE REFERENCES return_visits (id),
    member_id INTEGER NOT NULL REFERENCES members (id),
    staff_id INTEGER REFERENCES users (id),
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL
);
CREATE INDEX ix_survey_responses_survey ON survey_responses (survey_id, created_at);
CREATE INDEX ix_survey_responses_created ON survey_responses (created_at);
CREATE TABLE survey_answers (
    response_id INTEGER NOT NULL REFERENCES survey_responses (id),
    question_id INTEGER NOT NULL REFERENCES survey_questions (id),
    scale_value INTEGER CHECK (scale_value BETWEEN 1 AND 5),
    -- a choice, or a JSON list of choices for multi_choice
    choice TEXT,
    text_value TEXT,
    PRIMARY KEY (response_id, question_id)
);
CREATE INDEX ix_survey_answers_question ON survey_answers (question_id, scale_value);

-- 知识库 (the full-text index is created by crm.knowledge: it is SQLite's FTS5)
CREATE TABLE kb_categories (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    sort_order INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE kb_articles (
    id INTEGER PRIMARY KEY,
    category_id INTEGER REFERENCES kb_categories (id),
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'published')),
    -- readable without login (members look things up themselves)
    public INTEGER NOT NULL DEFAULT 0,
    pinned INTEGER NOT NULL DEFAULT 0,
    view_count INTEGER NOT NULL DEFAULT 0,
    created_by INTEGER REFERENCES users (id),
    updated_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    published_at TEXT
);
CREATE INDEX ix_kb_articles_listing ON kb_articles (status, pinned, view_count);
CREATE INDEX ix_kb_articles_category ON kb_articles (category_id, status);

-- 短信模版 / 邮件: templates with {variables}
CREATE TABLE message_templates (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
    name TEXT NOT NULL,
    subject TEXT,
    body TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- 群发: one row per bulk send, so the outbox rows of a mailing can be found and counted
CREATE TABLE message_batches (
    id INTEGER PRIMARY KEY,
    template_code TEXT NOT NULL,
    filter_json TEXT NOT NULL,
    queued INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
    recipient TEXT NOT NULL,
    member_id INTEGER REFERENCES members (id),
    template_code TEXT,
    batch_id INTEGER REFERENCES message_batches (id),
    subject TEXT,
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error TEXT,
    provider TEXT,
    provider_ref TEXT,
    -- greetings carry a key per member and day, so a second run of the day sends nothing twice
    dedupe_key TEXT UNIQUE,
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX ix_outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX ix_outbox_member ON outbox (member_id, id);
CREATE INDEX ix_outbox_batch ON outbox (batch_id);
-- 节日问候: 'MM-DD' every year (03-08 妇女节), or 'YYYY-MM-DD' for lunar holidays (春节).
CREATE TABLE greeting_days (
    id INTEGER PRIMARY KEY,
    day TEXT NOT NULL,
    name TEXT NOT NULL,
    template_code TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    UNIQUE (day, template_code)
);

-- REST API tokens: only a SHA-256 of the secret is stored.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_by INTEGER REFERENCES users (id),
    created_at TEXT NOT NULL,
    expires_at TEXT,
    last_used_at TEXT,
    revoked_at TEXT
);
CREATE INDEX ix_api_tokens_user ON api_tokens (user_id, id);

-- Member search by tag and level: the first increment measured 89 ms p99 at a million members
-- for this pair; with the level beside the tag one index range answers it (kept in step by
-- MemberService whenever a member's level or tags change).
ALTER TABLE member_tags ADD COLUMN level_code TEXT;
UPDATE member_tags SET level_code = (SELECT m.level_code FROM members m WHERE m.id = member_tags.member_id);
CREATE INDEX ix_member_tags_tag_level ON member_tags (tag, level_code, member_id);
"""

_V2_DEFAULTS = """
INSERT INTO roles (name, display_name, data_scope, builtin)
    SELECT 'expert', '美容专家', 'own', 1 WHERE NOT EXISTS (SELECT 1 FROM roles WHERE name = 'expert');

INSERT INTO role_permissions (role_id, permission)
    SELECT r.id, p.permission FROM roles r JOIN (
        SELECT 'admin' AS role, 'appointment.read' AS permission UNION ALL SELECT 'admin', 'appointment.write'
        UNION ALL SELECT 'admin', 'appointment.consult' UNION ALL SELECT 'admin', 'schedule.write'
        UNION ALL SELECT 'admin', 'catalogue.write' UNION ALL SELECT 'admin', 'order.read'
        UNION ALL SELECT 'admin', 'order.write' UNION ALL SELECT 'admin', 'visit.read'
        UNION ALL SELECT 'admin', 'visit.write' UNION ALL SELECT 'admin', 'visit.assign'
        UNION ALL SELECT 'admin', 'survey.write' UNION ALL SELECT 'admin', 'knowledge.read'
        UNION ALL SELECT 'admin', 'knowledge.write' UNION ALL SELECT 'admin', 'message.read'
        UNION ALL SELECT 'admin', 'message.send' UNION ALL SELECT 'admin', 'message.bulk'
        UNION ALL SELECT 'admin', 'template.write' UNION ALL SELECT 'admin', 'backup.run'
        UNION ALL SELECT 'supervisor', 'appointment.read' UNION ALL SELECT 'supervisor', 'appointment.write'
        UNION ALL SELECT 'supervisor', 'schedule.write' UNION ALL SELECT 'supervisor', 'catalogue.write'
        UNION ALL SELECT 'supervisor', 'order.read' UNION ALL SELECT 'supervisor', 'order.write'
        UNION ALL SELECT 'supervisor', 'visit.read' UNION ALL SELECT 'supervisor', 'visit.write'
        UNION ALL SELECT 'supervisor', 'visit.assign' UNION ALL SELECT 'supervisor', 'survey.write'
        UNION ALL SELECT 'supervisor', 'knowledge.read' UNION ALL SELECT 'supervisor', 'knowledge.write'
        UNION ALL SELECT 'supervisor', 'message.read' UNION ALL SELECT 'supervisor', 'message.send'
        UNION ALL SELECT 'supervisor', 'message.bulk' UNION ALL SELECT 'supervisor', 'template.write'
        UNION ALL SELECT 'agent', 'appointment.read' UNION ALL SELECT 'agent', 'appointment.write'
        UNION ALL SELECT 'agent', 'order.read' UNION ALL SELECT 'agent', 'order.write'
        UNION ALL SELECT 'agent', 'visit.read' UNION ALL SELECT 'agent', 'visit.write'
        UNION ALL SELECT 'agent', 'knowledge.read' UNION ALL SELECT 'agent', 'message.read'
        UNION ALL SELECT 'agent', 'message.send'
        UNION ALL SELECT 'technician', 'knowledge.read'
        UNION ALL SELECT 'auditor', 'appointment.read' UNION ALL SELECT 'auditor', 'order.read'
        UNION ALL SELECT 'auditor', 'visit.read' UNION ALL SELECT 'auditor', 'knowledge.read'
        UNION ALL SELECT 'auditor', 'message.read' UNION ALL SELECT 'auditor', 'catalogue.approve'
        UNION ALL SELECT 'expert', 'member.read' UNION ALL SELECT 'expert', 'appointment.read'
        UNION ALL SELECT 'expert', 'appointment.consult' UNION ALL SELECT 'expert', 'order.read'
        UNION ALL SELECT 'expert', 'knowledge.read'
    ) p ON p.role = r.name
    WHERE NOT EXISTS (SELECT 1 FROM role_permissions x WHERE x.role_id = r.id AND x.permission = p.permission);

INSERT INTO settings (key, value) VALUES
    ('visit.followup_delay_days', '3'),
    ('greeting.birthday_template', 'birthday');
"""

_V3_TABLES = """
-- 我的日程: an employee's own appointments with themselves (call back at 3, team meeting),
-- each with an optional reminder time.
CREATE TABLE schedule_items (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    title TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    starts_at TEXT NOT NULL,
    remind_at TEXT,
    member_id INTEGER REFERENCES members (id),
    done_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX ix_schedule_items_user ON schedule_items (user_id, starts_at);
CREATE INDEX ix_schedule_items_remind ON schedule_items (user_id, done_at, remind_at);

-- 站内消息: messages between staff. One recipient row per user, so a message to a department
-- has a read mark per person.
CREATE TABLE staff_messages (
    id INTEGER PRIMARY KEY,
    sender_id INTEGER REFERENCES users (id),
    subject TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    to_user_id INTEGER REFERENCES users (id),
    to_department_id INTEGER REFERENCES departments (id),
    created_at TEXT NOT NULL
);
CREATE INDEX ix_staff_messages_sender ON staff_messages (sender_id, id);
CREATE TABLE staff_message_recipients (
    message_id INTEGER NOT NULL REFERENCES staff_messages (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    read_at TEXT,
    PRIMARY KEY (user_id, message_id)
);
CREATE INDEX ix_staff_message_recipients_message ON staff_message_recipients (message_id);

-- 公告管理: company news, announcements, policies. No audience rows: everyone; else the listed
-- departments and every department below them.
CREATE TABLE notices (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    expires_at TEXT,
    published_by INTEGER REFERENCES users (id),
    published_at TEXT NOT NULL,
    withdrawn_at TEXT
);
CREATE INDEX ix_notices_published ON notices (withdrawn_at, pinned, published_at);
CREATE TABLE notice_departments (
    notice_id INTEGER NOT NULL REFERENCES notices (id),
    department_id INTEGER NOT NULL REFERENCES departments (id),
    PRIMARY KEY (notice_id, department_id)
);
-- 阅读回执
CREATE TABLE notice_reads (
    notice_id INTEGER NOT NULL REFERENCES notices (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    read_at TEXT NOT NULL,
    PRIMARY KEY (notice_id, user_id)
);

-- 退订: members who asked for no more bulk messages on a channel (replied TD, unsubscribed).
-- Bulk sends and greetings skip them; a message one agent sends one member still goes.
CREATE TABLE message_opt_outs (
    member_id INTEGER NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
    reason TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    PRIMARY KEY (member_id, channel)
);

-- Scales of 1-5 (satisfaction) or 0-10 (the "would you recommend us" question of NPS).
ALTER TABLE survey_questions ADD COLUMN scale_max INTEGER NOT NULL DEFAULT 5;
-- The answers' CHECK allowed 1-5 only; SQLite cannot alter a CHECK, so the table is rebuilt
-- (nothing references it). The service checks the exact range per question.
CREATE TABLE survey_answers_v3 (
    response_id INTEGER NOT NULL REFERENCES survey_responses (id),
    question_id INTEGER NOT NULL REFERENCES survey_questions (id),
    scale_value INTEGER CHECK (scale_value BETWEEN 0 AND 10),
    choice TEXT,
    text_value TEXT,
    PRIMARY KEY (response_id, question_id)
);
INSERT INTO survey_answers_v3 (response_id, question_id, scale_value, choice, text_value)
    SELECT response_id, question_id, scale_value, choice, text_value FROM survey_answers;
DROP TABLE survey_answers;
ALTER TABLE survey_answers_v3 RENAME TO survey_answers;
CREATE INDEX ix_survey_answers_question ON survey_answers (question_id, scale_value);

-- A return visit may follow a closed ticket or a completed appointment (reason 'manual').
ALTER TABLE return_visits ADD COLUMN ticket_id INTEGER REFERENCES tickets (id);
ALTER TABLE return_visits ADD COLUMN appointment_id INTEGER REFERENCES appointments (id);
CREATE UNIQUE INDEX ux_return_visits_ticket ON return_visits (ticket_id) WHERE ticket_id IS NOT NULL;
CREATE UNIQUE INDEX ux_return_visits_appointment ON return_visits (appointment_id) WHERE appointment_id IS NOT NULL;
"""

_V3_DEFAULTS = """
INSERT INTO role_permissions (role_id, permission)
    SELECT r.id, 'notice.write' FROM roles r WHERE r.name IN ('admin', 'supervisor')
    AND NOT EXISTS (SELECT 1 FROM role_permissions x WHERE x.role_id = r.id AND x.permission = 'notice.write');
"""

# 远程访问针对IP的授权或限制 (seed 000): the networks each role may work from (crm.networks).
# No rows for a role means "from anywhere", so upgrading changes nothing until an administrator
# restricts a role. `position` keeps the order the administrator wrote the list in.
_V4_TABLES = """
CREATE TABLE role_networks (
    role_id INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    network TEXT NOT NULL,
    PRIMARY KEY (role_id, position)
);
"""

MIGRATIONS: list[str] = [_V1_TABLES + _V1_DEFAULTS, _V2_TABLES + _V2_DEFAULTS, _V3_TABLES + _V3_DEFAULTS,
                         _V4_TABLES]
