DROP TABLE integration_alerts;
DROP TABLE delivery_attempts;
DROP TABLE deliveries;
DROP TABLE integrations;
