DROP TABLE events;
DROP TABLE fanouts;
DROP TABLE jobs;
DROP TABLE agents;
