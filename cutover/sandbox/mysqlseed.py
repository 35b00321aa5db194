"""The data of the sandbox's "Heroku ClearDB" database (issue 14): shaped like a small real app.

Several tables with primary keys, a utf8mb4 column holding emoji, a table without any key (an
append-only log), a foreign key, a trigger and a view (both with the add-on user as DEFINER, as
ClearDB creates them), a stored function, and ``rows`` rows of text in ``orders`` (a few MB at the
sandbox's default).
"""

from __future__ import annotations


def seed_sql(rows: int = 20_000) -> str:
    """SQL run as the add-on user in its database (no SUPER needed)."""
    return f"""
SET NAMES utf8mb4;
CREATE TABLE customers (
  id INT AUTO_INCREMENT PRIMARY KEY,
  email VARCHAR(190) NOT NULL UNIQUE,
  name VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
  note TEXT CHARACTER SET utf8mb4,
  avatar BLOB NULL,
  created_at DATETIME NOT NULL DEFAULT '2024-01-01 00:00:00'
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE orders (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  customer_id INT NOT NULL,
  total DECIMAL(10,2) NOT NULL,
  body VARCHAR(255) NOT NULL,
  KEY ix_customer (customer_id),
  CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE audit_log (
  at DATETIME NOT NULL,
  message VARCHAR(255) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE order_counts (
  customer_id INT PRIMARY KEY,
  n INT NOT NULL
) ENGINE=InnoDB;
INSERT INTO customers (email, name, note, avatar) VALUES
  ('ada@example.com', 'Ada 🚀', 'likes emoji 😀👍🏽', UNHEX('89504E470D0A1A0A00FF')),
  ('bob@example.com', 'Bob', NULL, NULL),
  ('cho@example.com', 'Chō 長', '', ''),
  ('dee@example.com', 'Dee', 'tab\\there and a newline\\nthere', NULL);
INSERT INTO audit_log VALUES ('2024-01-01 00:00:00', 'seeded'), ('2024-01-01 00:00:00', 'seeded'),
  ('2024-01-02 00:00:00', NULL);
CREATE TRIGGER count_orders AFTER INSERT ON orders FOR EACH ROW
  INSERT INTO order_counts VALUES (NEW.customer_id, 1) ON DUPLICATE KEY UPDATE n = n + 1;
CREATE VIEW big_spenders AS
  SELECT c.email, SUM(o.total) AS spent FROM customers c JOIN orders o ON o.customer_id = c.id
  GROUP BY c.email;
CREATE FUNCTION order_label(n BIGINT) RETURNS VARCHAR(32) DETERMINISTIC
  RETURN CONCAT('order-', n);
INSERT INTO orders (customer_id, total, body)
  SELECT 1 + (seq MOD 4), (seq MOD 1000) / 10, REPEAT(CHAR(65 + seq MOD 26), 120)
  FROM seq_1_to_{max(rows, 1)};
"""  # noqa: S608 - rows is an int
