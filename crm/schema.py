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

MIGRATIONS: list[str] = [_V1_TABLES + _V1_DEFAULTS]
